"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from embedq.ops.redis_server import RedisServer


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the module's Redis, emptied before and after the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
