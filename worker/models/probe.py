"""Measure candidate (backend, precision) pairs of one model on this CPU, on a fixed sample.

Each candidate embeds the sentences of the bundled STS sample (`sts_sample`, 175 pairs of
short captions, like search queries) in length-sorted batches of 32, as the worker does, after
one warm-up batch. That one pass gives its speed (texts/s, and the ratio to PyTorch fp32
measured in the same probe), its closeness to PyTorch fp32 (mean and minimum cosine) and its
STS Spearman. A candidate slower than `CUT_OFF` times PyTorch fp32 on its first timed batch
is cut there (bf16 on a CPU without bf16 units takes seconds per batch), and one that fails to
build or run is recorded with its error: a probe never kills the worker. A candidate that
passes the cut is timed on a second pass over the same batches, because some runtimes compile
kernels for each new input shape (OpenVINO's first pass over the sample ran at a third of its
second on an AMX Xeon), a cost a worker pays once per shape, not per batch.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

import numpy as np
import structlog

from embedq.worker.models.candidates import REFERENCE, Candidate
from embedq.worker.models.encoder import Encoder

log = structlog.get_logger(__name__)

BATCH = 32
FIRST_BATCH = 8
#: A candidate whose first timed batch takes this many times PyTorch fp32's time is cut.
CUT_OFF = 2.0


@dataclass(frozen=True, slots=True)
class StsSample:
    """Sentence pairs with gold similarity scores."""

    first: list[str]
    second: list[str]
    scores: np.ndarray

    @property
    def sentences(self) -> list[str]:
        """Every distinct sentence, in first-seen order."""
        return list(dict.fromkeys(self.first + self.second))


def _sts_rows() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(the probe's rows, the others) of the bundled STS-B sample (``data/sts.csv``)."""
    text = resources.files("embedq.worker.models").joinpath("data/sts.csv").read_text(
        encoding="utf-8")
    every = list(csv.DictReader(text.splitlines()))
    images = [r for r in every if r["source"] == "images"]
    probe = [r for r in every if r["source"] == "track5.en-en"] + images[::5]
    return probe, [r for i, r in enumerate(images) if i % 5]


def sts_sample() -> StsSample:
    """The probe's part of the bundled STS-B sample (``data/sts.csv``, CC BY-SA 4.0, see its
    README): all 125 ``track5.en-en`` pairs and every fifth of the 250 ``images`` pairs, 175 in
    all, enough for a stable difference between two precisions and quick at a worker's start."""
    rows, _ = _sts_rows()
    return StsSample([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
                     np.array([float(r["score"]) for r in rows]))


def calibration_texts(joined: int = 12) -> list[str]:
    """Texts to calibrate static int8 activation ranges on: the bundled sample's sentences that
    the probe does *not* use (so the probe judges a graph on texts it was not calibrated on),
    each alone and, for the ranges of longer inputs, runs of ``joined`` of them as one text."""
    _, rows = _sts_rows()
    sentences = list(dict.fromkeys(t for r in rows for t in (r["sentence1"], r["sentence2"])))
    runs = [" ".join(sentences[i:i + joined]) for i in range(0, len(sentences), joined)]
    return sentences + runs


@dataclass(frozen=True, slots=True)
class Measurement:
    """One candidate measured against PyTorch fp32 in the same probe."""

    candidate: Candidate
    texts_per_s: float
    speedup: float
    #: STS Spearman of this candidate, and PyTorch fp32's minus it.
    spearman: float
    spearman_drop: float
    #: Cosine of its vectors to PyTorch fp32's, over the sample's sentences.
    mean_cosine: float
    min_cosine: float
    error: str | None = None

    @classmethod
    def failed(cls, candidate: Candidate, error: str, texts_per_s: float = 0.0,
               speedup: float = 0.0) -> Measurement:
        """A candidate that could not be built, run, or was cut for slowness."""
        nan = float("nan")
        return cls(candidate, round(texts_per_s, 1), round(speedup, 3), nan, nan, nan, nan,
                   error)

    def fields(self) -> dict[str, Any]:
        """The figures by name, the candidate by its name: for a log line or a JSON row."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**row, "candidate": str(self.candidate)}


def spearman(vectors: dict[str, np.ndarray], sample: StsSample) -> float:
    """Spearman correlation of pair cosines with the gold scores."""
    from scipy.stats import spearmanr

    def unit(texts: list[str]) -> np.ndarray:
        stacked = np.stack([vectors[t] for t in texts])
        normed: np.ndarray = stacked / np.linalg.norm(stacked, axis=1, keepdims=True)
        return normed

    return float(spearmanr((unit(sample.first) * unit(sample.second)).sum(1),
                           sample.scores).statistic)


def _batches(encoder: Encoder, texts: list[str]) -> list[list[str]]:
    """Length-sorted batches of `BATCH`; the first one short, so a slow candidate is cut soon."""
    lengths = encoder.count_tokens(texts)
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    starts = [0, FIRST_BATCH, *range(FIRST_BATCH + BATCH, len(texts), BATCH)]
    return [[texts[i] for i in order[a:b]] for a, b in zip(starts, [*starts[1:], len(texts)],
                                                           strict=True)]


def _timed_pass(encoder: Encoder, texts: list[str], first_limit_s: float | None
                ) -> tuple[dict[str, np.ndarray], float, float, bool]:
    """(vectors by text, texts/s, first batch's seconds, finished); stops after the first
    batch when it took longer than ``first_limit_s``."""
    batches = _batches(encoder, texts)
    encoder.encode_batch(batches[0][:4])  # warm-up: lazy weights, kernel choice
    vectors: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    first_s = 0.0
    for batch in batches:
        for text, vector in zip(batch, encoder.encode_batch(batch), strict=True):
            vectors[text] = vector
        if not first_s:
            first_s = time.perf_counter() - started
            if first_limit_s is not None and first_s > first_limit_s:
                return vectors, len(batch) / first_s, first_s, False
    return vectors, len(texts) / (time.perf_counter() - started), first_s, True


@dataclass(slots=True)
class Probe:
    """Measures candidates against a PyTorch fp32 reference timed right before each of them
    (paired, so a neighbour's burst of load skews both or neither)."""

    sample: StsSample
    reference: Encoder | None = None
    vectors: dict[str, np.ndarray] | None = None
    reference_spearman: float = 0.0

    def measure(self, candidate: Candidate, build: Callable[[], Encoder]) -> Measurement:
        """Build and time one candidate; the first one measured must be `REFERENCE`."""
        texts = self.sample.sentences
        if self.reference is None:
            if candidate != REFERENCE:
                raise ValueError(f"the first candidate measured must be {REFERENCE}")
            self.reference = build()
            self.vectors, _, _, _ = _timed_pass(self.reference, texts, None)
            self.reference_spearman = spearman(self.vectors, self.sample)
        assert self.vectors is not None
        _, base_speed, base_first_s, _ = _timed_pass(self.reference, texts, None)
        try:
            encoder = self.reference if candidate == REFERENCE else build()
            vectors, speed, _, finished = _timed_pass(encoder, texts, CUT_OFF * base_first_s)
            if finished:  # timed again, warm: see the module docstring
                vectors, speed, _, _ = _timed_pass(encoder, texts, None)
        except Exception as exc:  # a probe must never kill the worker: record and move on
            log.warning("probe_candidate_failed", candidate=str(candidate), error=repr(exc))
            return Measurement.failed(candidate, f"failed: {exc!r}")
        ratio = speed / base_speed
        if not finished:
            return Measurement.failed(
                candidate, f"cut: {ratio:.2f}x {REFERENCE} on its first batch (limit "
                f"1/{CUT_OFF:g})", speed, ratio)
        want = np.stack([self.vectors[t] for t in texts])
        got = np.stack([vectors[t] for t in texts])
        cosines = (want * got).sum(1) / (np.linalg.norm(want, axis=1)
                                         * np.linalg.norm(got, axis=1))
        rho = spearman(vectors, self.sample)
        return Measurement(candidate, round(speed, 1), round(ratio, 3), round(rho, 4),
                           round(self.reference_spearman - rho, 4),
                           round(float(cosines.mean()), 6), round(float(cosines.min()), 6))
