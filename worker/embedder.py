"""The three-stage model step: prepare (count, sort, batch), core (forward passes), post.

Texts are sorted by token length and cut into batches by a padded-token budget as well as by
count, as TEI's ``max-batch-tokens`` does: a batch of short queries can be large, a batch of long
passages stays small, and padding waste stays low. The input order is restored at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedq.worker.backend import Backend

_OUTPUT_DTYPES = {"float32": np.float32, "float16": np.float16}


def plan_batches(
    token_counts: list[int], *, max_tokens: int, max_batch_tokens: int, max_batch_size: int
) -> list[list[int]]:
    """Indices of the texts grouped into forward passes, longest first.

    A batch costs ``len(batch) * its longest text`` padded tokens (each capped at max_tokens);
    a new batch starts when adding a text would pass the budget or the size limit.
    """
    order = sorted(range(len(token_counts)), key=lambda i: -token_counts[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = min(token_counts[index], max_tokens)
        if current and (
            len(current) >= max_batch_size or (len(current) + 1) * longest > max_batch_tokens
        ):
            batches.append(current)
            current = []
        if not current:
            longest = length  # sorted longest first: the first text sets the padded length
        current.append(index)
    if current:
        batches.append(current)
    return batches


def postprocess(vectors: np.ndarray, *, dim: int, normalize: bool, dtype: str) -> np.ndarray:
    """Matryoshka-truncate to ``dim``, then L2-normalise, then cast to the output dtype."""
    out = vectors[:, :dim].astype(np.float32, copy=True)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
    return out.astype(_OUTPUT_DTYPES[dtype], copy=False)


@dataclass(frozen=True, slots=True)
class Encoded:
    """Raw (pooled, untruncated, unnormalised) vectors in input order, with token facts."""

    vectors: np.ndarray
    tokens: list[int]
    truncated: list[bool]
    batch_sizes: list[int]


class Embedder:
    """A backend plus the batching policy it runs under."""

    def __init__(self, backend: Backend, *, max_batch_tokens: int, max_batch_size: int) -> None:
        self.backend = backend
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size

    def encode(self, texts: list[str]) -> Encoded:
        """Embed ``texts`` in token-budget batches and return them in input order."""
        tokens = self.backend.count_tokens(texts)
        batches = plan_batches(
            tokens,
            max_tokens=self.backend.max_tokens,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=self.max_batch_size,
        )
        vectors = np.empty((len(texts), self.backend.dim), dtype=np.float32)
        for batch in batches:
            vectors[batch] = self.backend.encode_batch([texts[i] for i in batch])
        truncated = [count > self.backend.max_tokens for count in tokens]
        return Encoded(vectors, tokens, truncated, [len(b) for b in batches])
