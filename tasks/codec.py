"""Vectors on the wire: raw little-endian bytes, zstd-compressed, never lists of floats.

A 384-d float32 vector is 1,536 bytes raw against 8.6 KB as a JSON list; msgpack carries the
bytes as a binary field, so the result backend stores about what the numbers weigh.
"""

from __future__ import annotations

import numpy as np
import zstandard

from embedq.config.errors import PayloadError
from embedq.config.precisions import OutputDtype
from embedq.tasks.zstd import compressor, decompressor

_DTYPES: dict[str, np.dtype[np.number]] = {
    "float32": np.dtype("<f4"), "float16": np.dtype("<f2"),
    "int8": np.dtype("i1"), "uint8": np.dtype("u1"),
}


def vector_width(dim: int, output_dtype: OutputDtype | str) -> int:
    """Columns of a vector of ``dim`` dimensions in an output dtype (binary packs 8 per byte).

    A request carries the output dtype as its string value; either form is accepted here.
    """
    return OutputDtype(output_dtype).width(dim)


def empty_vectors(rows: int, dim: int, output_dtype: OutputDtype | str) -> np.ndarray:
    """Rows to fill with vectors; rows left unfilled (failed items) are NaN, or 0 for integers."""
    kind = OutputDtype(output_dtype)
    dtype = np.dtype(kind.array_dtype)
    fill = np.nan if dtype.kind == "f" else 0
    return np.full((rows, kind.width(dim)), fill, dtype=dtype)


def encode_vectors(vectors: np.ndarray) -> bytes:
    """Compress a 2-d vector array's bytes (the dtype and shape travel beside them)."""
    dtype = _DTYPES.get(vectors.dtype.name)
    if dtype is None or vectors.ndim != 2:
        raise PayloadError(
            f"cannot encode vectors of dtype {vectors.dtype} and shape {vectors.shape}; "
            f"expected a 2-d array of {', '.join(_DTYPES)}"
        )
    return compressor().compress(np.ascontiguousarray(vectors, dtype=dtype).tobytes())


def decode_vectors(blob: bytes, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of `encode_vectors`; a size mismatch is a `PayloadError`, not garbage."""
    np_dtype = _DTYPES.get(dtype)
    if np_dtype is None:
        raise PayloadError(f"unknown vector dtype {dtype!r}; expected one of {', '.join(_DTYPES)}")
    try:
        raw = decompressor().decompress(blob)
    except zstandard.ZstdError as exc:
        raise PayloadError(f"vector payload is not valid zstd data: {exc}") from exc
    rows, cols = shape
    if len(raw) != rows * cols * np_dtype.itemsize:
        raise PayloadError(
            f"vector payload holds {len(raw)} bytes, expected {rows}x{cols} {dtype}"
        )
    vectors: np.ndarray = np.frombuffer(raw, dtype=np_dtype).reshape(rows, cols)
    return vectors.astype(np_dtype.newbyteorder("="))
