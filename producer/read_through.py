"""Read-through at the producer: cached texts are answered with one MGET, never enqueued.

Cache keys include the model revision, which only a worker knows (it comes from the weights it
loaded). Workers publish it, with their token limit, under `model_info_key`; this module reads
that once per ``EMBEDQ_CACHE_MODEL_INFO_TTL_S`` and, while nothing is published (no worker has
served the model yet), skips the lookup. Redis being down or slow costs one bounded timeout, then
the lookup is skipped until a backoff passes: a producer never fails because of its cache.
"""

from __future__ import annotations

import time

import redis

from embedq.config.settings import Settings
from embedq.tasks.cache_codec import CachedVector, CacheValueError, ModelInfo, ValueReader
from embedq.tasks.codec import vector_width
from embedq.tasks.names import cache_key, model_info_key
from embedq.tasks.redis_guard import RedisGuard, guarded_client
from embedq.tasks.schema import EmbedRequest

_UNPUBLISHED_TTL_S = 1.0


class ReadThrough:
    """Looks a request's texts up in the shared Redis tier, in one round trip."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.guard = RedisGuard(client or guarded_client(settings), what="cache",
                                backoff_max_s=settings.cache_backoff_max_s)
        self.reader = ValueReader()
        self._info_ttl_s = settings.cache_model_info_ttl_s
        self._infos: dict[tuple[str, str], tuple[float, ModelInfo | None]] = {}

    def close(self) -> None:
        """Close the connections to the cache Redis."""
        self.guard.close()

    def model_info(self, model: str, precision: str) -> ModelInfo | None:
        """What a worker published for (model, precision), memoised for a short while."""
        now = time.monotonic()
        memo = self._infos.get((model, precision))
        if memo is not None and memo[0] > now:
            return memo[1]
        raw = self.guard.run(lambda client: client.get(model_info_key(model, precision)), None)
        if self.guard.down:
            return None  # not memoised: ask again once the backoff has passed
        try:
            info = ModelInfo.decode(raw) if isinstance(raw, bytes) else None
        except CacheValueError:
            info = None  # an unreadable publication means: do not guess keys
        # Nothing published yet (no worker has served the model) is asked again soon: the first
        # worker's publication should start the read-through within a second, not a full TTL.
        ttl = self._info_ttl_s if info is not None else min(self._info_ttl_s, _UNPUBLISHED_TTL_S)
        self._infos[(model, precision)] = (now + ttl, info)
        return info

    def lookup(self, request: EmbedRequest) -> tuple[ModelInfo | None, list[CachedVector | None]]:
        """The model facts used and, per text of ``request``, its cached entry or None."""
        misses: list[CachedVector | None] = [None] * len(request.texts)
        info = self.model_info(request.model, request.precision)
        if info is None:
            return None, misses
        space = info.space(request)
        keys = [cache_key(request.model, space, text) for text in request.texts]
        replies = self.guard.run(lambda client: client.mget(keys), None)
        if replies is None:
            return info, misses
        read, dim = self.reader.read, vector_width(request.dim, request.output_dtype)
        return info, [read(key, reply, dim) for key, reply in zip(keys, replies, strict=True)]
