"""Vector arithmetic that producers, workers and the cache must do the same way."""

from __future__ import annotations

import numpy as np

from embedq.config.precisions import OutputDtype


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (2-d, float) scaled to unit length in place; zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def to_float32(vectors: np.ndarray, output_dtype: OutputDtype | str, dim: int) -> np.ndarray:
    """A route's vectors as float32 rows, for the APIs that speak only floats (OpenAI's HTTP
    shape, LangChain, LlamaIndex).

    float16 and int8 widen exactly; binary (packed sign bits) becomes -1.0/+1.0 per dimension,
    so dot products still rank as Hamming distances do.
    """
    if OutputDtype(output_dtype) is OutputDtype.BINARY:
        bits = np.unpackbits(vectors, axis=1, count=dim)
        return bits.astype("<f4") * 2 - 1
    return np.ascontiguousarray(vectors, dtype="<f4")
