"""Cross-task batching: many small embed messages become one model call.

Built on celery-batches, which buffers messages in the worker's consumer and hands a list of
requests to one pool process. Its trigger counts messages; here the trigger counts *texts*, so
one bulk message of 64 texts goes out at once (and the next to the other pool process) while a
storm of single-text messages is merged up to the same size, or until the short flush interval
passes, so a lone request is never held back long. Acks stay late: a batch whose process dies
leaves every message in it unacknowledged, and the broker redelivers them.
"""

from __future__ import annotations

from queue import Queue
from typing import Any

from celery_batches import Batches

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
    """A Batches task that flushes when ``flush_texts`` texts are buffered."""

    abstract = True
    flush_every = _MESSAGE_TRIGGER_OFF
    flush_texts = 64

    def __init__(self) -> None:
        super().__init__()
        self._buffer = _TextCountingQueue(self)
        self._buffered_texts = 0

    def on_buffered(self, texts: int) -> None:
        """Flush as soon as a full forward pass worth of texts is waiting."""
        self._buffered_texts += texts
        if self._buffered_texts >= self.flush_texts:
            self._do_flush()

    def _do_flush(self) -> None:
        self._buffered_texts = 0
        super()._do_flush()
