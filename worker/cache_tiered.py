"""The two-tier vector cache: this process's memory tier in front of the shared Redis tier.

It has the same ``get_many`` / ``set_many`` interface as each tier and is only their
composition: a lookup asks memory, then Redis for what memory lacked (one round trip), and
promotes Redis hits into memory; a write goes to both, in the storage dtype, so a vector reads
back the same from either tier. It also publishes what producers and operators need: each
model's revision and token limit (for producers' cache keys) and the per-tier counters.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from embedq.config.settings import Settings
from embedq.tasks.cache_codec import CachedVector, ModelInfo, TierStats, as_stored
from embedq.tasks.names import cache_stats_key, model_info_key
from embedq.worker.cache_memory import MemoryCache
from embedq.worker.cache_redis import RedisCache

log = structlog.get_logger(__name__)
STATS_EVERY_S = 10.0
_STATS_TTL_S = 300  # a stopped worker's counters disappear from `embedq cache stats`


class TieredCache:
    """Memory first, then Redis; writes to both; counters per tier."""

    def __init__(self, memory: MemoryCache, shared: RedisCache, *, storage_dtype: str) -> None:
        self.memory = memory
        self.shared = shared
        self.storage_dtype = storage_dtype
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._announced: set[tuple[str, str]] = set()
        self._recoveries = 0
        self._reported_at = float("-inf")  # the first batch reports at once

    @classmethod
    def from_settings(cls, settings: Settings) -> TieredCache:
        """Both tiers as configured; build it in the process that uses it (after fork)."""
        return cls(MemoryCache(settings.cache_memory_bytes), RedisCache.from_settings(settings),
                   storage_dtype=settings.cache_storage_dtype)

    def get_many(self, keys: Sequence[str], widths: Sequence[int]) -> list[CachedVector | None]:
        """Entries in order, None for misses in both tiers; Redis hits move into memory."""
        found = self.memory.get_many(keys, widths)
        missing = [i for i, entry in enumerate(found) if entry is None]
        if not missing:
            return found
        fetched = self.shared.get_many([keys[i] for i in missing], [widths[i] for i in missing])
        promoted: dict[str, CachedVector] = {}
        for i, entry in zip(missing, fetched, strict=True):
            if entry is not None:
                found[i] = promoted[keys[i]] = entry
        self.memory.set_many(promoted)
        return found

    def set_many(self, entries: Mapping[str, CachedVector]) -> None:
        """Store entries in both tiers, converted to the storage dtype."""
        stored = {key: as_stored(entry, self.storage_dtype) for key, entry in entries.items()}
        self.memory.set_many(stored)
        self.shared.set_many(stored)

    def announce(self, model: str, precision: str, info: ModelInfo) -> None:
        """Publish a model's facts for producers: on first use, again after a Redis outage (a
        restarted Redis lost them) and with every report (an LFU Redis may have evicted them)."""
        if self.shared.guard.recoveries != self._recoveries:
            self._recoveries = self.shared.guard.recoveries
            self._announced.clear()
        if (model, precision) in self._announced:
            return
        if self.shared.put(model_info_key(model, precision), info.encode()):
            self._announced.add((model, precision))

    def close(self) -> None:
        """Close the Redis tier's connections (the memory tier needs nothing)."""
        self.shared.close()

    def stats(self) -> dict[str, TierStats]:
        """Counters of each tier in this process."""
        return {"memory": self.memory.stats(), "redis": self.shared.stats()}

    def report(self) -> None:
        """Log and publish the counters, at most every `STATS_EVERY_S`."""
        now = time.monotonic()
        if now - self._reported_at < STATS_EVERY_S:
            return
        self._reported_at = now
        self._announced.clear()
        tiers = self.stats()
        log.info("cache_stats", **{
            f"{tier}_{name}": value
            for tier, stats in tiers.items()
            for name, value in {**stats.as_fields(), "hit_rate": round(stats.hit_rate, 4)}.items()
        })
        self.shared.publish_stats(cache_stats_key(self.worker_id), tiers, _STATS_TTL_S)


def no_cache() -> TieredCache | None:
    """The cache accessor of a service that runs without a cache."""
    return None


def process_cache(settings: Settings) -> Callable[[], TieredCache | None]:
    """An accessor of this process's cache, built on first use in each process.

    A worker builds its service before forking its pool; a Redis connection and a memory tier
    must not be shared across fork, so each pool process gets its own on first use.
    """
    if not settings.cache_enabled:
        return no_cache
    built: dict[int, TieredCache] = {}

    def current() -> TieredCache:
        pid = os.getpid()
        if pid not in built:
            built.clear()
            built[pid] = TieredCache.from_settings(settings)
        return built[pid]

    return current
