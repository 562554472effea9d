"""Output quantization: float vectors to int8 (calibrated) or packed binary, as pure functions.

int8 maps each dimension's calibrated range onto -128..127, as sentence-transformers'
``quantize_embeddings`` does. The ranges must be the same for every batch and every worker of a
model, or int8 vectors from two batches would not compare; so they come from fixed calibration
texts, embedded once per model revision and precision and kept as a file in the model cache
(first writer wins, readers reuse it). Values outside the range are clipped. Binary keeps the
sign of each dimension, eight dimensions to a byte (Hamming distance compares them).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from embedq.config.files import write_once

# Short, varied English texts, not taken from any evaluation set; the ONNX export's acceptance
# check uses them too. Pairs of them widen the calibration set without shipping a corpus.
SEED_TEXTS = [
    "A man is playing a guitar on the street.",
    "The committee postponed its decision until next spring.",
    "How do I reset my password if I no longer have the recovery email?",
    "Cells divide by mitosis, producing two genetically identical daughter cells.",
    "Stocks fell sharply on Monday after the central bank raised interest rates again.",
    "She sliced the onions thinly and fried them until golden.",
    "Antibiotic resistance is rising in hospitals across the region.",
    "The train to Lyon leaves from platform nine at 7:42.",
    "Quantum dots emit light at wavelengths set by their size.",
    "Our quarterly revenue grew by twelve percent, driven by subscriptions.",
    "kids playing football in the park after school",
    "Error 503: the service is temporarily unavailable, please retry later.",
    "The novel follows three generations of a family of fishermen.",
    "Vitamin D deficiency has been linked to a higher risk of fractures in older adults.",
    "Please find the signed contract attached to this message.",
    "A small dog is chasing a red ball across the lawn.",
]
CALIBRATION_TEXTS = SEED_TEXTS + [f"{a} {b}" for a, b in itertools.permutations(SEED_TEXTS, 2)]
_INT8_LEVELS = 255


def int8_ranges(calibration: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (minimum, step) of calibration vectors already post-processed."""
    low = calibration.min(axis=0)
    step = (calibration.max(axis=0) - low) / _INT8_LEVELS
    return low.astype(np.float32), np.where(step > 0, step, 1.0).astype(np.float32)


def to_int8(vectors: np.ndarray, ranges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Map each dimension's calibrated range onto -128..127 (outside values are clipped)."""
    low, step = ranges
    levels = np.rint((vectors - low) / step) - 128
    out: np.ndarray = np.clip(levels, -128, 127).astype(np.int8)
    return out


def to_binary(vectors: np.ndarray) -> np.ndarray:
    """One bit per dimension (1 where positive), packed eight to a byte."""
    return np.packbits(vectors > 0, axis=1)


def _load(path: Path) -> np.ndarray:
    vectors: np.ndarray = np.load(path)
    return vectors


def calibration_vectors(path: Path, encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Raw calibration vectors from ``path``, embedded with ``encode`` and saved on first use."""
    if not path.is_file():
        vectors = np.asarray(encode(CALIBRATION_TEXTS), dtype=np.float32)
        write_once(path, lambda sink: np.save(sink, vectors))
    return _load(path)  # the file's vectors (first writer wins): every process, same ranges
