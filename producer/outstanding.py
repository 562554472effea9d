"""Messages a producer has sent and not yet had answered, and whose rows each answer fills.

Shared by the dispatcher (which adds a message before pushing it, so even an instant reply finds
it), the reply listener (which removes it when the reply comes) and the lost-message probe; every
access holds one lock. A message's ``parts`` say, per waiting job, which of the job's rows are
which of the message's texts: one message can serve many callers, one caller many messages.

The table also counts, per queue, the interactive texts it waits for: work this process knows
is ahead of its next request, whether still queued or already being computed (which the
queue's own backlog counter no longer shows), for shedding (`embedq.producer.load`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from embedq.producer.jobs import Job


@dataclass
class SentMessage:
    """One message on its way: its bytes (to send again if lost) and the jobs it serves."""

    task_id: str
    queue: str
    raw: bytes
    parts: list[tuple[Job, list[int], list[int]]]  # job, job rows, message rows
    key: str = ""  # the list it was pushed to: the queue, or its bulk list
    deadline: float = float("inf")  # wall clock: the latest of its callers' deadlines
    texts: int = 0
    cancelled: set[int] = field(default_factory=set)  # message rows whose callers left
    sent_at: float = field(default_factory=time.monotonic)
    resends: int = 0
    missing_probes: int = 0
    state: str = "sent"

    def __post_init__(self) -> None:
        self.key = self.key or self.queue

    @property
    def bulk(self) -> bool:
        """True for a message on its queue's bulk list."""
        return self.key != self.queue

    @property
    def abandoned(self) -> bool:
        """True when every job it serves is already done (answered, failed or given up)."""
        return all(job.done() for job, _, _ in self.parts)


class Outstanding:
    """Sent, unanswered messages by task id."""

    def __init__(self) -> None:
        self._messages: dict[str, SentMessage] = {}
        self._texts: Counter[str] = Counter()  # interactive texts waited for, by queue
        self._lock = threading.Lock()

    def add(self, messages: list[SentMessage]) -> None:
        """Remember messages that are about to be pushed."""
        with self._lock:
            for message in messages:
                if message.task_id not in self._messages and not message.bulk:
                    self._texts[message.queue] += message.texts
                self._messages[message.task_id] = message

    def pop(self, task_id: str) -> SentMessage | None:
        """The message a reply answers (None for a duplicate or a forgotten one)."""
        with self._lock:
            return self._forget(task_id)

    def _forget(self, task_id: str) -> SentMessage | None:
        message = self._messages.pop(task_id, None)
        if message is not None and not message.bulk:
            self._texts[message.queue] -= message.texts
        return message

    def texts(self, queue: str) -> int:
        """Interactive texts of ``queue`` this process still waits for."""
        with self._lock:
            return self._texts[queue]

    def oldest(self, older_than_s: float, limit: int) -> list[SentMessage]:
        """Up to ``limit`` messages sent longer ago than ``older_than_s``, oldest first."""
        cutoff = time.monotonic() - older_than_s
        with self._lock:
            old = [m for m in self._messages.values() if m.sent_at < cutoff]
        return sorted(old, key=lambda m: m.sent_at)[:limit]

    def forget_abandoned(self) -> int:
        """Drop messages nobody waits for any more: every caller has its answer, has failed or
        cancelled, or their deadline has passed (the workers skip such a message, so it is
        neither lost nor worth sending again; a late reply expires in Redis by itself)."""
        now = time.time()
        with self._lock:
            gone = [t for t, m in self._messages.items() if m.deadline <= now or m.abandoned]
            for task_id in gone:
                self._forget(task_id)
        return len(gone)

    def of_job(self, job: Job) -> list[SentMessage]:
        """The unanswered messages that carry rows of ``job`` (the job knows their ids, so this
        costs nothing however many messages are outstanding)."""
        with self._lock:
            return [m for t in job.task_ids if (m := self._messages.get(t)) is not None]

    def drain(self) -> list[SentMessage]:
        """Take every message (the client is closing)."""
        with self._lock:
            messages = list(self._messages.values())
            self._messages.clear()
            self._texts.clear()
        return messages

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)
