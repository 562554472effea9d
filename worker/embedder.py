"""The three-stage model step: prepare (count, sort, cut into passes), core (forward passes),
post (dimension, normalisation, dtype).

Every pass's time is fed to `PassCost`, whose fit decides how the next batch is cut (padding
against one pass more) and how long a pass will take (which texts can still meet their deadline).

How passes are cut is the batching policy's (`embedq.worker.batching.PassPolicy`). Before each
pass the caller may drop texts nobody waits for any more (their callers' deadlines passed): work
for a caller that has left is never done. The input order is restored at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedq.config.errors import ConfigError
from embedq.config.precisions import OutputDtype
from embedq.tasks.vectors import l2_normalize
from embedq.worker.batching import PassPolicy
from embedq.worker.models.encoder import Encoder
from embedq.worker.models.quantize import calibration_vectors, int8_ranges, to_binary, to_int8
from embedq.worker.pass_cost import PassCost


def postprocess(vectors: np.ndarray, *, dim: int, normalize: bool, output_dtype: OutputDtype,
                ranges: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Matryoshka-truncate to ``dim``, then L2-normalise, then the output dtype (int8 needs the
    calibrated ``ranges`` of this dim and normalisation, see `Embedder.int8_ranges`)."""
    out = vectors[:, :dim].astype(np.float32, copy=True)
    if normalize:
        l2_normalize(out)
    if output_dtype is OutputDtype.BINARY:
        return to_binary(out)
    if output_dtype is OutputDtype.INT8:
        if ranges is None:
            raise ConfigError("int8 output needs calibration ranges; none were given")
        return to_int8(out, ranges)
    return out.astype(output_dtype.array_dtype, copy=False)


@dataclass(frozen=True, slots=True)
class Encoded:
    """Raw (pooled, untruncated, unnormalised) vectors in input order, with token facts."""

    vectors: np.ndarray
    tokens: list[int]
    truncated: list[bool]
    batch_sizes: list[int]
    dropped: frozenset[int] = frozenset()  # texts skipped because nobody waited for them
    halted: frozenset[int] = frozenset()  # texts not started because the worker is stopping


@dataclass
class _Calibration:
    """Where this model's int8 calibration vectors live, and the ranges derived so far."""

    path: Path
    vectors: np.ndarray | None = None
    ranges: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class Embedder:
    """An encoder plus the pass policy it runs under."""

    def __init__(self, encoder: Encoder, passes: PassPolicy, *,
                 calibration_file: Path | None = None) -> None:
        self.encoder = encoder
        self.passes = passes
        self.cost = PassCost()  # measured over the passes run: what the next one will take
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
                calibration.vectors, dim=dim, normalize=normalize,
                output_dtype=OutputDtype.FLOAT32))
        return calibration.ranges[(dim, normalize)]

    def encode(self, texts: list[str],
               wanted: Callable[[list[int], float], list[int]] | None = None, *,
               prompt: str = "", halt: Callable[[], bool] | None = None) -> Encoded:
        """Embed ``texts`` (each after ``prompt``) pass by pass and return them in input order.
        ``wanted`` (if given) is asked before each pass, with the seconds the pass is expected
        to take, which of its texts are still wanted; the others are dropped (NaN rows, listed
        in ``dropped``). ``halt`` (if given) is asked before each pass too: once it says the
        worker is stopping, no further pass starts (the pass in progress has finished) and the
        texts of the passes not run are listed in ``halted`` (NaN rows), for the caller to hand
        back to the queue. Token counts and truncation include the prompt's tokens, as
        sentence-transformers'."""
        tokens = self.encoder.count_tokens(texts, prompt)
        limit = self.encoder.max_tokens
        passes = self.passes.plan(tokens, truncate_at=limit,
                                  overhead_tokens=self.cost.overhead_tokens)

        def padded(rows: list[int]) -> int:
            return len(rows) * min(max(tokens[i] for i in rows), limit)

        vectors = np.full((len(texts), self.encoder.dim), np.nan, dtype=np.float32)
        dropped: set[int] = set()
        halted: list[int] = []
        sizes: list[int] = []
        for planned in passes:
            if halted or (halt is not None and halt()):
                halted.extend(planned)
                continue
            run = planned if wanted is None else wanted(
                planned, self.cost.seconds(padded(planned)))
            dropped.update(set(planned) - set(run))
            if run:
                started = time.perf_counter()
                vectors[run] = self.encoder.encode_batch([texts[i] for i in run], prompt)
                self.cost.observe(padded(run), time.perf_counter() - started)
                sizes.append(len(run))
        truncated = [count > self.encoder.max_tokens for count in tokens]
        return Encoded(vectors, tokens, truncated, sizes, frozenset(dropped), frozenset(halted))
