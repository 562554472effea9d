"""The memory tier on its own: a hard byte bound, W-TinyLFU admission, honest counters."""

from __future__ import annotations

import numpy as np

from embedq.tasks.cache_codec import CachedVector, as_stored
from embedq.worker.cache_memory import FrequencySketch, MemoryCache, entry_weight


def _entry(dim: int = 64) -> CachedVector:
    return as_stored(CachedVector(np.ones(dim, dtype=np.float32), 4, False), "float16")


def _key(i: int) -> str:
    return f"embedq:v1:vec:m:0123456789abcdef:{i:032x}"


def _touch(cache: MemoryCache, key: str, entry: CachedVector) -> bool:
    """A cache-aside access: look up, store on a miss; True for a hit."""
    if cache.get_many([key], [64])[0] is not None:
        return True
    cache.set_many({key: entry})
    return False


def test_hits_misses_and_bytes():
    entry = _entry()
    cache = MemoryCache(100 * entry_weight(_key(0), entry))
    assert cache.get_many([_key(1)], [64]) == [None]
    cache.set_many({_key(1): entry})
    assert cache.get_many([_key(1), _key(2)], [64, 64]) == [entry, None]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 2, 1)
    assert stats.bytes == entry_weight(_key(1), entry)


def test_never_holds_more_bytes_than_its_bound():
    small, large = _entry(16), _entry(1024)
    bound = 40 * entry_weight(_key(0), small)
    cache = MemoryCache(bound)
    for i in range(2000):
        _touch(cache, _key(i % 300), large if i % 7 == 0 else small)
        assert cache.stats().bytes <= bound
    assert cache.stats().evictions > 0


def test_an_entry_larger_than_the_cache_is_not_kept():
    cache = MemoryCache(1000)
    cache.set_many({_key(1): _entry(4096)})
    assert cache.get_many([_key(1)], [4096]) == [None]
    assert MemoryCache(0).stats().bytes == 0


def test_a_scan_of_cold_keys_does_not_flush_the_hot_set():
    entry = _entry()
    cache = MemoryCache(50 * entry_weight(_key(0), entry))
    hot = [_key(i) for i in range(20)]
    for _ in range(10):
        for key in hot:
            _touch(cache, key, entry)
    for i in range(1000, 6000):  # one pass over 5,000 cold keys, each seen once
        _touch(cache, _key(i), entry)
    survivors = sum(entry is not None for entry in cache.get_many(hot, [64] * len(hot)))
    assert survivors == len(hot)  # an LRU of this size would have kept none of them


def test_replacing_a_key_keeps_one_copy():
    entry = _entry()
    cache = MemoryCache(10 * entry_weight(_key(0), entry))
    cache.set_many({_key(1): entry})
    cache.set_many({_key(1): _entry(32)})
    stats = cache.stats()
    assert stats.entries == 1
    assert cache.get_many([_key(1)], [32])[0].vector.shape == (32,)


def test_sketch_counts_and_ages():
    sketch = FrequencySketch(1024)
    for _ in range(15):
        sketch.increment("hot")
    sketch.increment("warm")
    assert sketch.frequency("hot") == 15 > sketch.frequency("warm") >= 1
    seen = []
    for i in range(10 * 1024):  # a full sample of lookups halves every counter once
        sketch.increment(f"other-{i}")
        seen.append(sketch.frequency("hot"))
    assert min(seen) < 15  # counters only grow, except when they age
