"""Cross-task batching: many small embed messages become one model call.

Built on celery-batches, which buffers messages in the worker's consumer (the parent process)
and hands a list of requests to one pool process. Two changes make it a dynamic batcher:

* the trigger counts *texts*, not messages: one bulk message of 64 texts goes out at once (and
  the next one to the other pool process), while single-text messages are merged up to the same
  size;
* the flush timer does not hand a partial batch to the pool while every pool process is busy:
  the batch keeps growing until a process is free (and flushes the moment one is), so batches
  grow with load instead of queueing behind each other one text at a time.

Acks stay late: messages are acknowledged when their batch returns. If the pool process dies
mid-batch, every message of the batch is rejected with requeue, so the broker redelivers them;
if the whole worker dies, Redis redelivers its unacknowledged messages after the visibility
timeout.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from queue import Queue
from typing import Any

import structlog
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

from embedq.worker.metrics import BatchMetrics

log = structlog.get_logger(__name__)

_MESSAGE_TRIGGER_OFF = 10**9


def count_texts(args: Any) -> int:
    """Texts in one embed message (a malformed one counts as one)."""
    try:
        return max(1, len(args[0]["texts"]))
    except (TypeError, KeyError, IndexError):
        return 1


class _TextCountingQueue(Queue[Any]):
    """The consumer's buffer, which reports each request's text count as it is added."""

    def __init__(self, owner: TextBatches) -> None:
        super().__init__()
        self._owner = owner

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._owner.on_buffered(count_texts(item.args))


class TextBatches(Batches):  # type: ignore[misc]  # celery-batches is untyped
    """A Batches task that flushes by texts and lets batches grow while the pool is busy."""

    abstract = True
    flush_every = _MESSAGE_TRIGGER_OFF
    flush_texts = 64
    metrics: BatchMetrics | None = None

    def __init__(self) -> None:
        super().__init__()
        self._buffer = _TextCountingQueue(self)
        self._buffered_texts = 0
        self._in_flight = 0

    def on_buffered(self, texts: int) -> None:
        """Flush as soon as a full forward pass worth of texts is waiting."""
        self._buffered_texts += texts
        if self._buffered_texts >= self.flush_texts:
            self._flush_now()

    def _pool_busy(self) -> bool:
        return self._in_flight >= max(1, int(getattr(self._pool, "num_processes", 1) or 1))

    def _do_flush(self) -> None:
        """The timer's flush: skipped while every pool process is busy and the batch not full."""
        if self._pool_busy() and self._buffered_texts < self.flush_texts:
            return
        self._flush_now()

    def _flush_now(self) -> None:
        self._buffered_texts = 0
        super()._do_flush()

    def flush(self, requests: Collection[Any]) -> Any:
        """Hand one batch to a pool process; ack on return, requeue if the process dies."""
        batch = list(requests)
        payload = ([SimpleRequest.from_request(r) for r in batch],)
        self._in_flight += 1
        queue = (batch[0].delivery_info or {}).get("routing_key") or ""
        started = time.monotonic()
        if self.metrics:
            texts = sum(count_texts(r.args) for r in batch)
            self.metrics.batch_started(queue, len(batch), texts)

        def on_return(_: Any) -> None:
            self._in_flight -= 1
            if self.metrics:
                self.metrics.batch_ended(queue, time.monotonic() - started, lost=False)
            for request in batch:
                request.acknowledge()
            if self._buffered_texts:
                self._flush_now()  # a process is free: take what gathered meanwhile

        def on_error(exc: Any) -> None:
            self._in_flight -= 1
            if self.metrics:
                self.metrics.batch_ended(queue, time.monotonic() - started, lost=True)
            log.error("batch_lost", requests=len(batch), error=repr(exc))
            for request in batch:
                request.reject(requeue=True)

        return self._pool.apply_async(
            apply_batches_task, (self, payload, 0, None), callback=on_return,
            error_callback=on_error,
        )
