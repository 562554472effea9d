"""The three-stage model step: prepare (count, sort, batch), core (forward passes), post.

Texts are sorted by token length and cut into batches by a padded-token budget as well as by
count, as TEI's ``max-batch-tokens`` does: a batch of short queries can be large, a batch of long
passages stays small, and padding waste stays low. The input order is restored at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedq.config.errors import ConfigError
from embedq.tasks.vectors import l2_normalize
from embedq.worker.models.encoder import Encoder
from embedq.worker.models.quantize import calibration_vectors, int8_ranges, to_binary, to_int8

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


def postprocess(vectors: np.ndarray, *, dim: int, normalize: bool, output_dtype: str,
                ranges: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Matryoshka-truncate to ``dim``, then L2-normalise, then the output dtype (int8 needs the
    calibrated ``ranges`` of this dim and normalisation, see `Embedder.int8_ranges`)."""
    out = vectors[:, :dim].astype(np.float32, copy=True)
    if normalize:
        l2_normalize(out)
    if output_dtype == "binary":
        return to_binary(out)
    if output_dtype == "int8":
        if ranges is None:
            raise ConfigError("int8 output needs calibration ranges; none were given")
        return to_int8(out, ranges)
    return out.astype(_OUTPUT_DTYPES[output_dtype], copy=False)


@dataclass(frozen=True, slots=True)
class Encoded:
    """Raw (pooled, untruncated, unnormalised) vectors in input order, with token facts."""

    vectors: np.ndarray
    tokens: list[int]
    truncated: list[bool]
    batch_sizes: list[int]


@dataclass
class _Calibration:
    """Where this model's int8 calibration vectors live, and the ranges derived so far."""

    path: Path
    vectors: np.ndarray | None = None
    ranges: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class Embedder:
    """An encoder plus the batching policy it runs under."""

    def __init__(self, encoder: Encoder, *, max_batch_tokens: int, max_batch_size: int,
                 calibration_file: Path | None = None) -> None:
        self.encoder = encoder
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self._calibration = _Calibration(calibration_file) if calibration_file else None

    def int8_ranges(self, dim: int, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension int8 ranges for vectors truncated to ``dim`` (and normalised or not).

        Derived from calibration vectors embedded once per model revision and precision and
        shared through a file, so every batch and every worker maps values the same way.
        """
        calibration = self._calibration
        if calibration is None:
            raise ConfigError("int8 output needs a calibration file; this embedder has none")
        if (dim, normalize) not in calibration.ranges:
            if calibration.vectors is None:
                calibration.vectors = calibration_vectors(
                    calibration.path, lambda texts: self.encode(texts).vectors)
            calibration.ranges[(dim, normalize)] = int8_ranges(postprocess(
                calibration.vectors, dim=dim, normalize=normalize, output_dtype="float32"))
        return calibration.ranges[(dim, normalize)]

    def encode(self, texts: list[str], prompt: str = "") -> Encoded:
        """Embed ``texts`` (each after ``prompt``) in token-budget batches, in input order;
        token counts and truncation include the prompt's tokens, as sentence-transformers'."""
        tokens = self.encoder.count_tokens(texts, prompt)
        batches = plan_batches(
            tokens,
            max_tokens=self.encoder.max_tokens,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=self.max_batch_size,
        )
        vectors = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        for batch in batches:
            vectors[batch] = self.encoder.encode_batch([texts[i] for i in batch], prompt)
        truncated = [count > self.encoder.max_tokens for count in tokens]
        return Encoded(vectors, tokens, truncated, [len(b) for b in batches])
