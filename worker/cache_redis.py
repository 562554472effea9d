"""The Redis tier: one key per vector, shared by every worker (and read by producers).

Reads are one pipelined round trip of ``GETEX key EX ttl`` per batch, so a hit refreshes its
TTL in the same round trip (RedisVL's cache needs one EXPIRE round trip per key); writes are one
pipelined round trip of ``SET key value EX ttl``. Values are binary (see
`embedq.tasks.cache_codec`), never JSON floats. Redis being down or slow never fails a job: the
`RedisGuard` turns it into misses, logs once and retries by itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from embedq.config.settings import Settings
from embedq.tasks.cache_codec import CachedVector, TierStats, ValueReader, encode_entry
from embedq.tasks.redis_guard import RedisGuard, guarded_client


class RedisCache:
    """Cached vectors in Redis, batched both ways, failure-tolerant."""

    def __init__(self, guard: RedisGuard, *, ttl_s: int) -> None:
        self.guard = guard
        self.ttl_s = ttl_s
        self._stats = TierStats()
        self._reader = ValueReader()

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisCache:
        """A Redis tier on ``EMBEDQ_CACHE_URL`` (or the shared Redis) with bounded timeouts."""
        guard = RedisGuard(guarded_client(settings), what="cache",
                           backoff_max_s=settings.cache_backoff_max_s)
        return cls(guard, ttl_s=settings.cache_ttl_s)

    def get_many(self, keys: Sequence[str], widths: Sequence[int]) -> list[CachedVector | None]:
        """Entries in order (None for misses), refreshing the TTL of every hit."""
        if not keys:
            return []

        def fetch(client: redis.Redis) -> list[object]:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.getex(key, ex=self.ttl_s)
            return list(pipe.execute(raise_on_error=False))

        replies = self.guard.run(fetch, None)
        if replies is None:
            self._stats.misses += len(keys)
            return [None] * len(keys)
        decode = self._reader.read
        found = [decode(k, r, w) for k, w, r in zip(keys, widths, replies, strict=True)]
        hits = sum(entry is not None for entry in found)
        self._stats.hits += hits
        self._stats.misses += len(keys) - hits
        return found

    def set_many(self, entries: Mapping[str, CachedVector]) -> None:
        """Write entries with the TTL, in one round trip (skipped while Redis is down)."""
        if not entries:
            return
        blobs = {key: encode_entry(entry) for key, entry in entries.items()}

        def write(client: redis.Redis) -> list[object]:
            pipe = client.pipeline(transaction=False)
            for key, blob in blobs.items():
                pipe.set(key, blob, ex=self.ttl_s)
            return list(pipe.execute(raise_on_error=False))

        replies = self.guard.run(write, None)
        if replies is None:
            return
        failed = sum(isinstance(reply, Exception) for reply in replies)  # e.g. OOM, noeviction
        self._stats.errors += failed
        self._stats.writes += len(blobs) - failed
        self._stats.written_bytes += sum(len(blob) for blob in blobs.values())

    def put(self, key: str, value: bytes) -> bool:
        """Store a small value without TTL (model facts); False if Redis is unavailable."""
        return self.guard.run(lambda client: bool(client.set(key, value)), False)

    def publish_stats(self, key: str, tiers: Mapping[str, TierStats], ttl_s: int) -> None:
        """Store per-tier counters as one hash that expires unless published again."""
        fields: dict[Any, int] = {
            f"{tier}.{name}": value
            for tier, stats in tiers.items()
            for name, value in stats.as_fields().items()
        }

        def write(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, ttl_s)
            pipe.execute()

        self.guard.run(write, None)

    def close(self) -> None:
        """Close the Redis connections."""
        self.guard.close()

    def stats(self) -> TierStats:
        """A snapshot of this process's counters (errors include connection failures)."""
        snapshot = TierStats(**self._stats.as_fields())
        snapshot.errors += self.guard.errors
        snapshot.corrupt = self._reader.corrupt
        return snapshot
