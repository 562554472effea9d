"""What the worker needs from a model: count tokens, and one forward pass over one batch.

Everything else (sorting, batching, truncating dimensions, normalising, caching) is the
worker's own and is shared by every encoder, the deterministic hashing model included.

A ``prompt`` goes before every text as sentence-transformers' ``encode(prompt=...)`` puts it:
counted, truncated and (unless the model's pooling leaves it out) pooled with the text.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Encoder(Protocol):
    """A loaded model at one weight precision."""

    #: Native output dimension.
    dim: int
    #: Inputs longer than this many tokens (special tokens included) are truncated.
    max_tokens: int
    #: Where the weights came from and which version they are: part of every cache key.
    revision: str
    #: The weight precision actually used (what ``auto`` resolved to): results name it.
    precision: str
    #: Bytes of the weights as loaded (parameters, or the int8 model file): for reports.
    weight_bytes: int

    def count_tokens(self, texts: list[str], prompt: str = "") -> list[int]:
        """Token counts of prompt + text without truncation, special tokens included."""
        ...

    def encode_batch(self, texts: list[str], prompt: str = "") -> np.ndarray:
        """One forward pass: float32 ``(len(texts), dim)``, pooled, not normalised."""
        ...
