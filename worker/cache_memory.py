"""The memory tier: cached vectors in one worker process, bounded by bytes, W-TinyLFU.

W-TinyLFU (Einziger et al.; Caffeine; the `theine` package) puts new entries in a small LRU
window and lets one into the main space only if a frequency sketch says it is asked for more
often than the entry it would push out, so one scan of cold texts cannot flush the hot set.

Hand-rolled rather than taken from theine 2.x, for reasons checked in its source: theine bounds
entries by count (its Rust core has no weights), and vectors of different routes differ in size
(a 32-d float16 and a 1024-d float32 vector differ 64x), so a count bound is no memory bound;
its evictions happen inside the core without a hook, so bytes and evictions cannot be counted;
and it starts a maintenance thread at import, which does not survive a fork.
``benchmarks/bench_cache.py`` measures this against theine and a plain LRU on a Zipf stream.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from embedq.tasks.cache_codec import CachedVector, TierStats

# Python objects around a vector's data and its key string, measured with tracemalloc in the
# benchmark: the array header, the entry and its tuple, and the ordered-dict slot holding it.
ENTRY_OVERHEAD_BYTES = 680
_TYPICAL_ENTRY_BYTES = 512  # sizes the sketch: 2-4 counters per entry measured best
_WINDOW_FRACTION = 0.01
_PROTECTED_FRACTION = 0.8
_DEPTH = 4
_MAX_COUNT = 15  # counters saturate here, as Caffeine's 4-bit counters do
_SEEDS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
_MASK64 = (1 << 64) - 1
_HALVE = bytes(value >> 1 for value in range(256))


def entry_weight(key: str, entry: CachedVector) -> int:
    """Bytes an entry occupies in this process, data plus Python object overhead."""
    return int(entry.vector.nbytes) + sys.getsizeof(key) + ENTRY_OVERHEAD_BYTES


class FrequencySketch:
    """A count-min sketch of recent lookups with saturating counters that halve periodically,
    so popularity ages and yesterday's hot set does not keep today's out."""

    def __init__(self, expected_entries: int) -> None:
        width = 16
        while width < expected_entries:
            width *= 2
        self._width = width
        self._shift = 64 - width.bit_length() + 1
        self._table = bytearray(_DEPTH * width)
        self._additions = 0
        self._sample = 10 * width

    def _slots(self, key: str) -> list[int]:
        h = hash(key) & _MASK64
        return [row * self._width + (((h * seed) & _MASK64) >> self._shift)
                for row, seed in enumerate(_SEEDS)]

    def increment(self, key: str) -> None:
        """Count one lookup of ``key``."""
        table = self._table
        added = False
        for slot in self._slots(key):
            if table[slot] < _MAX_COUNT:
                table[slot] += 1
                added = True
        if added:
            self._additions += 1
            if self._additions >= self._sample:
                self._table = self._table.translate(_HALVE)
                self._additions //= 2

    def frequency(self, key: str) -> int:
        """Estimated recent lookups of ``key`` (never an underestimate before aging)."""
        table = self._table
        return min(table[slot] for slot in self._slots(key))


_Region = OrderedDict[str, tuple[CachedVector, int]]


class MemoryCache:
    """Byte-bounded W-TinyLFU cache of `CachedVector` entries; thread-safe.

    Regions: a window (1 % of the bytes, LRU), and a main space split into probation and
    protected (80 % of main) segments. Lookups feed the frequency sketch; a probation hit moves
    an entry to protected; entries leaving the window must out-score probation's LRU to stay.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._window_max = int(max_bytes * _WINDOW_FRACTION)
        self._protected_max = int((max_bytes - self._window_max) * _PROTECTED_FRACTION)
        self._window: _Region = OrderedDict()
        self._probation: _Region = OrderedDict()
        self._protected: _Region = OrderedDict()
        self._regions = {"window": self._window, "probation": self._probation,
                         "protected": self._protected}
        self._sizes = {"window": 0, "probation": 0, "protected": 0}
        self._sketch = FrequencySketch(max(16, max_bytes // _TYPICAL_ENTRY_BYTES))
        self._lock = threading.Lock()
        self._stats = TierStats()

    def get_many(self, keys: Sequence[str], widths: Sequence[int]) -> list[CachedVector | None]:
        """Entries for ``keys`` in order, None for misses and for an entry of another width.

        Both tiers keep the same promise (a hit is a vector of the width asked for), so a caller
        never has to check what a tier returns.
        """
        with self._lock:
            found = [self._get(key) for key in keys]
        return [entry if entry is not None and entry.vector.shape == (width,) else None
                for entry, width in zip(found, widths, strict=True)]

    def set_many(self, entries: Mapping[str, CachedVector]) -> None:
        """Insert or replace entries; each may be refused by admission or evicted at once."""
        with self._lock:
            for key, entry in entries.items():
                self._set(key, entry)

    def stats(self) -> TierStats:
        """A snapshot of the counters, with current entries and bytes."""
        with self._lock:
            snapshot = TierStats(**self._stats.as_fields())
            snapshot.entries = len(self._window) + len(self._probation) + len(self._protected)
            snapshot.bytes = sum(self._sizes.values())
            return snapshot

    def _get(self, key: str) -> CachedVector | None:
        self._sketch.increment(key)
        for region in (self._window, self._protected):
            if key in region:
                region.move_to_end(key)
                self._stats.hits += 1
                return region[key][0]
        item = self._probation.pop(key, None)
        if item is None:
            self._stats.misses += 1
            return None
        self._sizes["probation"] -= item[1]
        self._put("protected", key, item)
        while self._sizes["protected"] > self._protected_max and len(self._protected) > 1:
            demoted, old = self._protected.popitem(last=False)
            self._sizes["protected"] -= old[1]
            self._put("probation", demoted, old)
        self._stats.hits += 1
        return item[0]

    def _put(self, region: str, key: str, item: tuple[CachedVector, int]) -> None:
        self._regions[region][key] = item
        self._sizes[region] += item[1]

    def _discard(self, key: str) -> bool:
        for name, region in self._regions.items():
            item = region.pop(key, None)
            if item is not None:
                self._sizes[name] -= item[1]
                return True
        return False

    def _set(self, key: str, entry: CachedVector) -> None:
        weight = entry_weight(key, entry)
        self._stats.writes += 1
        self._discard(key)
        if weight > self.max_bytes - self._window_max:
            return  # larger than the whole main space: never cacheable
        self._put("window", key, (entry, weight))
        while self._sizes["window"] > self._window_max and self._window:
            candidate, item = self._window.popitem(last=False)
            self._sizes["window"] -= item[1]
            self._put("probation", candidate, item)
            self._evict(candidate)
        self._evict(None)

    def _evict(self, candidate: str | None) -> None:
        """Evict until the bytes fit; a candidate from the window must out-score each victim."""
        while sum(self._sizes.values()) > self.max_bytes:
            victim = self._victim(candidate)
            if candidate is not None and (
                victim is None
                or self._sketch.frequency(candidate) <= self._sketch.frequency(victim)
            ):
                victim, candidate = candidate, None
            if victim is None:
                return
            self._discard(victim)
            self._stats.evictions += 1

    def _victim(self, exclude: str | None) -> str | None:
        """The least recently used entry of probation, else of protected, else of the window."""
        for region in (self._probation, self._protected, self._window):
            for key in region:
                if key != exclude:
                    return key
        return None
