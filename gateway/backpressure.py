"""Back-pressure: refuse new work (429) while a route's queue is deeper than a limit.

A client that gets 429 can retry, shed load or try elsewhere; a client whose request joins a
line that only grows waits until its own timeout and learns nothing. The depth is read from the
broker at most once per ``interval`` per route: one request pays the round trip (in a thread, so
the event loop never blocks) and the others go on the last reading meanwhile. Several gateway
processes each read the same queue, so the limit holds for all of them together.
"""

from __future__ import annotations

import asyncio
import time

from embedq.gateway.errors import BackPressureError
from embedq.producer import EmbeddingClient

_INTERVAL_S = 0.25


class QueueDepths:
    """The last known depth of each route's queue, refreshed when it grows stale."""

    def __init__(self, client: EmbeddingClient, limit: int, interval_s: float = _INTERVAL_S
                 ) -> None:
        self._client = client
        self._limit = limit
        self._interval_s = interval_s
        self._readings: dict[str, tuple[float, int]] = {}  # use case -> (monotonic time, depth)
        self._reading: dict[str, asyncio.Future[int]] = {}  # reads in progress

    def _read(self, use_case: str) -> int:
        return self._client.route_status(use_case).queue.depth

    async def depth(self, use_case: str) -> int:
        """The queue's depth, at most ``interval`` old (the first call waits for a reading)."""
        last = self._readings.get(use_case)
        if last is not None and time.monotonic() - last[0] < self._interval_s:
            return last[1]
        pending = self._reading.get(use_case)
        if pending is not None and last is not None:
            return last[1]  # someone is reading already; their answer serves the next requests
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._read, use_case))
            self._reading[use_case] = pending
            pending.add_done_callback(lambda done: self._store(use_case, done))
        return await asyncio.shield(pending)

    def _store(self, use_case: str, done: asyncio.Future[int]) -> None:
        self._reading.pop(use_case, None)
        if not done.cancelled() and done.exception() is None:
            self._readings[use_case] = (time.monotonic(), done.result())

    async def check(self, use_case: str) -> None:
        """Raise `BackPressureError` when the route's queue is over the limit."""
        depth = await self.depth(use_case)
        if depth > self._limit:
            raise BackPressureError(
                f"use case {use_case!r} has {depth:,} messages waiting, more than this "
                f"gateway's limit of {self._limit:,} (EMBEDQ_GATEWAY_MAX_QUEUE_DEPTH); retry "
                "later, or add workers for its model")
