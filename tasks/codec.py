"""Vectors on the wire: raw little-endian bytes, zstd-compressed, never lists of floats.

A 384-d float32 vector is 1,536 bytes raw against 8.6 KB as a JSON list; msgpack carries the
bytes as a binary field, so the result backend stores about what the numbers weigh.
"""

from __future__ import annotations

import numpy as np
import zstandard

from embedq.config.errors import PayloadError

_DTYPES: dict[str, np.dtype[np.floating]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
_COMPRESSION_LEVEL = 1  # float bytes gain little from harder levels; speed matters more.
_compressor = zstandard.ZstdCompressor(level=_COMPRESSION_LEVEL)
_decompressor = zstandard.ZstdDecompressor()


def encode_vectors(vectors: np.ndarray) -> bytes:
    """Compress a 2-d float array's bytes (the dtype and shape travel beside them)."""
    dtype = _DTYPES.get(vectors.dtype.name)
    if dtype is None or vectors.ndim != 2:
        raise PayloadError(
            f"cannot encode vectors of dtype {vectors.dtype} and shape {vectors.shape}; "
            f"expected a 2-d array of {', '.join(_DTYPES)}"
        )
    return _compressor.compress(np.ascontiguousarray(vectors, dtype=dtype).tobytes())


def decode_vectors(blob: bytes, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of `encode_vectors`; a size mismatch is a `PayloadError`, not garbage."""
    np_dtype = _DTYPES.get(dtype)
    if np_dtype is None:
        raise PayloadError(f"unknown vector dtype {dtype!r}; expected one of {', '.join(_DTYPES)}")
    try:
        raw = _decompressor.decompress(blob)
    except zstandard.ZstdError as exc:
        raise PayloadError(f"vector payload is not valid zstd data: {exc}") from exc
    rows, cols = shape
    if len(raw) != rows * cols * np_dtype.itemsize:
        raise PayloadError(
            f"vector payload holds {len(raw)} bytes, expected {rows}x{cols} {dtype}"
        )
    vectors: np.ndarray = np.frombuffer(raw, dtype=np_dtype).reshape(rows, cols)
    return vectors.astype(np_dtype.newbyteorder("="))
