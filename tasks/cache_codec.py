"""What the vector cache stores: cached vectors, published model facts and tier counters.

A cached value is one tag byte (the format version) and a msgpack array of the dtype, the shape,
the vector's bytes and the token facts a result reports (token count, truncated). Producers and
workers of different releases read each other's values, so every way a value can be wrong (other
version, corrupt, other dtype or shape) raises `CacheValueError`, which callers turn into a miss.

Compression was chosen by measurement (``benchmarks/bench_cache.py``): on 384-d MiniLM vectors
stored as float16, neither zstd nor lz4 shrinks the value as a whole (+1 %: the mantissa bytes
are noise, and zstd skips entropy coding when half the block is incompressible). The high byte of
each number (sign and exponent) carries only ~5.5 bits, though, so the bytes are split into
planes and the high plane alone is zstd-compressed (384 -> ~325 bytes); lz4 has no entropy stage
and gains nothing there. That takes a value from 782 to ~727 bytes, under jemalloc's 768-byte
size class, so one cached vector costs ~960 bytes of Redis memory (key included) instead of
~1,080. Decoding one costs ~9 µs, so a producer decodes 100 hits in about a millisecond.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import msgpack
import numpy as np
import structlog
import zstandard

from embedq.config.errors import PayloadError
from embedq.config.precisions import OutputDtype
from embedq.tasks.names import vector_space
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.vectors import l2_normalize
from embedq.tasks.zstd import compressor, decompressor

FORMAT_TAG = 0x01  # format version 1: [dtype, shape, zstd(high byte plane), other planes, ...]
STORAGE_DTYPES: dict[str, np.dtype[Any]] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
# Quantized vectors (int8, packed binary) are stored exactly as returned (one byte plane,
# compressed), keyed by their array dtype's name.
_EXACT_DTYPES: dict[str, np.dtype[Any]] = {
    kind.array_dtype: np.dtype(kind.array_dtype) for kind in OutputDtype if kind.quantized}
_KNOWN = {dtype.str: dtype for dtype in (*STORAGE_DTYPES.values(), *_EXACT_DTYPES.values())}
_FIELDS = 6
log = structlog.get_logger(__name__)


class CacheValueError(PayloadError):
    """A cached value that must not be returned: corrupt, truncated, another format version,
    dtype or shape. Callers count it, log it once and treat it as a miss (it is overwritten)."""


@dataclass(frozen=True, slots=True)
class CachedVector:
    """One text's vector in one vector space, with the token facts its result reports."""

    vector: np.ndarray
    tokens: int
    truncated: bool


def as_stored(entry: CachedVector, storage_dtype: str) -> CachedVector:
    """The entry with its vector cast to a storage dtype and made read-only (shared by tiers).

    Float vectors take the storage dtype; int8 and binary vectors keep their own, exactly.
    """
    target = _EXACT_DTYPES.get(entry.vector.dtype.name) or STORAGE_DTYPES[storage_dtype]
    if entry.vector.dtype == target and not entry.vector.flags.writeable:
        return entry
    vector = entry.vector.astype(target)  # a copy: the cache must not alias a result's rows
    vector.flags.writeable = False
    return CachedVector(vector, entry.tokens, entry.truncated)


def restore(vectors: list[np.ndarray], *, normalize: bool, dtype: str) -> np.ndarray:
    """Stored vectors as result rows (``dtype`` is the rows' array dtype): float vectors become
    float32 again, re-normalised when the route normalises (float16 storage moves a unit
    vector's norm by up to ~1e-3), then the output dtype; int8 and binary come back as stored."""
    if dtype in _EXACT_DTYPES:
        return np.stack(vectors).astype(dtype)
    out = np.stack(vectors).astype(np.float32)
    if normalize:
        l2_normalize(out)
    return out.astype(dtype, copy=False)


def place_cached(rows: np.ndarray, hits: Mapping[int, CachedVector], *, normalize: bool,
                 tokens: list[int], truncated: list[bool]) -> None:
    """Write cache hits into result ``rows`` (and their token facts) at their positions.

    The one place where cached and freshly computed vectors meet: the producer's read-through
    and the worker's cache lookup both fill their results through it.
    """
    if not hits:
        return
    rows[list(hits)] = restore([entry.vector for entry in hits.values()],
                               normalize=normalize, dtype=rows.dtype.name)
    for index, entry in hits.items():
        tokens[index], truncated[index] = entry.tokens, entry.truncated


def encode_entry(entry: CachedVector) -> bytes:
    """The bytes stored in Redis for one cached vector (see the module docstring)."""
    vector = entry.vector
    dtype = STORAGE_DTYPES.get(vector.dtype.name) or _EXACT_DTYPES.get(vector.dtype.name)
    if dtype is None or vector.ndim != 1:
        raise CacheValueError(
            f"cannot cache a vector of dtype {vector.dtype} and shape {vector.shape}; "
            f"expected a 1-d array of {', '.join([*STORAGE_DTYPES, *_EXACT_DTYPES])}"
        )
    raw = np.ascontiguousarray(vector, dtype=dtype).tobytes()
    size = dtype.itemsize
    high = compressor().compress(raw[size - 1 :: size])
    low = b"".join(raw[plane::size] for plane in range(size - 1))
    body = [dtype.str, [len(vector)], high, low, int(entry.tokens), bool(entry.truncated)]
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return bytes((FORMAT_TAG,)) + packed


def _unpack(blob: bytes) -> list[Any]:
    if not blob or blob[0] != FORMAT_TAG:
        tag = blob[0] if blob else None
        raise CacheValueError(f"cached value has format tag {tag!r}, expected {FORMAT_TAG}")
    try:
        body = msgpack.unpackb(blob[1:], raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CacheValueError(f"cached value is not valid msgpack: {exc}") from exc
    if not isinstance(body, list) or len(body) != _FIELDS:
        raise CacheValueError(f"cached value is not a {_FIELDS}-field array")
    return body


def decode_entry(blob: bytes, dim: int) -> CachedVector:
    """The inverse of `encode_entry`; anything but a sound ``dim``-d vector is an error."""
    dtype_name, shape, high, low, tokens, truncated = _unpack(blob)
    dtype = _KNOWN.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None or shape != [dim]:
        raise CacheValueError(f"cached value is {dtype_name!r} {shape!r}, expected {dim}-d vector")
    size = dtype.itemsize
    if not isinstance(low, bytes) or len(low) != dim * (size - 1):
        raise CacheValueError("cached value's low byte planes have the wrong length")
    if not isinstance(tokens, int) or not isinstance(truncated, bool) or tokens < 0:
        raise CacheValueError("cached value's token facts are malformed")
    try:
        high = decompressor().decompress(high, max_output_size=dim)
    except (zstandard.ZstdError, TypeError) as exc:
        raise CacheValueError(f"cached value's high byte plane is not valid zstd: {exc}") from exc
    if len(high) != dim:
        raise CacheValueError("cached value's high byte plane has the wrong length")
    out = bytearray(dim * size)
    out[size - 1 :: size] = high
    for plane in range(size - 1):
        out[plane::size] = low[plane * dim : (plane + 1) * dim]
    vector = np.frombuffer(out, dtype=dtype)
    vector.flags.writeable = False
    return CachedVector(vector, tokens, truncated)


class ValueReader:
    """Turns replies of the cache Redis into entries: a bad value is counted, logged once per
    process (a flood of them must not flood the log), and read as a miss."""

    def __init__(self) -> None:
        self.corrupt = 0
        self._logged = False

    def read(self, key: str, reply: object, dim: int) -> CachedVector | None:
        """The entry in ``reply`` (a GET's answer), or None for a missing or bad value."""
        if reply is None:
            return None
        try:
            if not isinstance(reply, bytes):
                raise CacheValueError(f"cached value is not a string: {reply!r}")
            return decode_entry(reply, dim)
        except CacheValueError as exc:
            self.corrupt += 1
            if not self._logged:
                self._logged = True
                log.warning("cache_value_corrupt", key=key, error=str(exc),
                            note="treated as a miss and overwritten; later ones are only counted")
            return None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What only a worker knows about a loaded model and every cache key needs.

    ``precision`` is the weight precision actually used: a request may ask for ``auto``, and
    vectors of the precision it resolved to must not share keys with another host's choice.
    """

    revision: str
    max_tokens: int
    precision: str

    def space(self, request: EmbedRequest) -> str:
        """The vector space id of a request's vectors under this model."""
        return vector_space(
            model=request.model,
            revision=self.revision,
            precision=self.precision,
            dim=request.dim,
            normalize=request.normalize,
            output_dtype=request.output_dtype,
            max_tokens=self.max_tokens,
            prompt=request.prompt,
        )

    def encode(self) -> bytes:
        """JSON, so ``redis-cli GET`` shows it to a person."""
        return json.dumps({"revision": self.revision, "max_tokens": self.max_tokens,
                           "precision": self.precision}).encode()

    @classmethod
    def decode(cls, blob: bytes) -> ModelInfo:
        """Parse a published model info; anything malformed is a `CacheValueError`."""
        try:
            data = json.loads(blob)
            info = cls(revision=data["revision"], max_tokens=data["max_tokens"],
                       precision=data["precision"])
        except (ValueError, TypeError, KeyError) as exc:
            raise CacheValueError(f"published model info is malformed: {blob!r}") from exc
        if not all(isinstance(v, str) for v in (info.revision, info.precision)) or not isinstance(
                info.max_tokens, int):
            raise CacheValueError(f"published model info is malformed: {blob!r}")
        return info


@dataclass(slots=True)
class TierStats:
    """Counters of one cache tier in one process; also the shape ``embedq cache stats`` reads.

    ``entries`` and ``bytes`` are what the memory tier holds now; the Redis tier leaves them at 0
    (the server counts its own keys) and reports ``writes`` and ``written_bytes`` instead.
    """

    hits: int = 0
    misses: int = 0
    errors: int = 0
    corrupt: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0
    writes: int = 0
    written_bytes: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0.0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def as_fields(self) -> dict[str, int]:
        """A flat map for a Redis hash or a log line."""
        return asdict(self)

    @classmethod
    def from_fields(cls, data: dict[Any, Any]) -> TierStats:
        """Read a published hash (bytes or str keys); unknown or bad fields count as 0."""
        values: dict[str, int] = {}
        for item in fields(cls):
            raw = data.get(item.name, data.get(item.name.encode(), 0))
            try:
                values[item.name] = int(raw)
            except (TypeError, ValueError):
                values[item.name] = 0
        return cls(**values)

    def __add__(self, other: TierStats) -> TierStats:
        """Sum two processes' counters."""
        mine, theirs = self.as_fields(), other.as_fields()
        return TierStats(**{name: mine[name] + theirs[name] for name in mine})
