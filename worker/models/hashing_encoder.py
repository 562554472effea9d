"""A deterministic hashing "model": same text, same vector, on any machine, in microseconds.

It exists so tests of everything that is not the model (routing, batching, caching, failure
handling) run fast, and as an explicit, opt-in last resort. It is never substituted for a real
model silently: only a route that names it gets it. Vectors are signed feature hashes of word
unigrams and bigrams, so texts that share words are similar, as a toy embedding should be.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import xxhash

from embedq.config.registry import ModelSpec
from embedq.config.sources import HashingSource


class HashingEncoder:
    """Signed feature hashing of words and word pairs into ``dim`` buckets."""

    def __init__(self, spec: ModelSpec, source: HashingSource) -> None:
        self.dim = spec.dim
        self.max_tokens = spec.max_tokens
        self.revision = f"hashing-v1-seed{source.seed}"
        self.precision = "fp32"
        self.weight_bytes = 0
        self._seed = source.seed
        self._delay_s = source.delay_ms / 1e3

    @staticmethod
    def _words(text: str) -> list[str]:
        return text.lower().split()

    def count_tokens(self, texts: list[str], prompt: str = "") -> list[int]:
        """Words plus two, the way a BERT tokenizer adds [CLS] and [SEP]."""
        return [len(self._words(prompt + text)) + 2 for text in texts]

    def encode_batch(self, texts: list[str], prompt: str = "") -> np.ndarray:
        """Hash each (truncated) text's words and word pairs into a float32 vector."""
        texts = [prompt + text for text in texts] if prompt else texts
        if self._delay_s:
            time.sleep(self._delay_s)  # the configured stand-in for a forward pass
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = self._words(text)[: self.max_tokens - 2]
            features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            for feature in features or [""]:
                h = xxhash.xxh64_intdigest(feature.encode("utf-8", "surrogatepass"), self._seed)
                out[row, h % self.dim] += 1.0 if (h >> 63) else -1.0
        return out
