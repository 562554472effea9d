"""``celery inspect active`` on an embed worker: the messages its consumers hold.

Celery's own answer lists the requests its consumer handed to the pool, and on an embed worker
that is none: embedq's consumers, in the pool processes, claim messages into their in-flight
lists (`worker.claims`). So the worker's parent answers from those lists, in Celery's format
(``Request.info``), for the consumers it forked. ``inspect reserved`` stays Celery's (empty:
an embed consumer reserves nothing ahead of its claim) and ``inspect stats`` reports the pool
and broker as always; embed counts are on ``/metrics``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import redis
import structlog
from celery.worker import control

from embedq.tasks.connections import blob_list
from embedq.tasks.names import inflight_key, live_key
from embedq.tasks.wire import GarbageMessageError, open_envelope

log = structlog.get_logger(__name__)


def _mine(consumer: str, parent: int) -> int | None:
    """The pool pid of a consumer id (``host:ns:pid:parent-nonce``) forked by ``parent``."""
    try:
        _, _, pid, tail = consumer.rsplit(":", 3)
        return int(pid) if int(tail.split("-", 1)[0]) == parent else None
    except ValueError:
        return None


def _info(raw: bytes, queue: str, hostname: str, pid: int) -> dict[str, Any] | None:
    try:
        envelope = open_envelope(raw)
    except GarbageMessageError:
        return None
    return {"id": envelope.task_id, "name": envelope.task, "type": envelope.task,
            "args": f"<{queue}>", "kwargs": "{}", "hostname": hostname,
            "time_start": envelope.enqueued_at, "acknowledged": False,
            "delivery_info": {"exchange": "", "routing_key": queue, "priority": 0,
                              "redelivered": False},
            "worker_pid": pid}


def held_messages(client: redis.Redis, queues: list[str], hostname: str,
                  parent: int) -> list[dict[str, Any]]:
    """Every message the consumers of ``parent``'s pool processes hold, as Celery lists them."""
    found: list[dict[str, Any]] = []
    for queue in queues:
        for member in client.zrange(live_key(queue), 0, -1):
            consumer = member.decode() if isinstance(member, bytes) else str(member)
            pid = _mine(consumer, parent)
            if pid is None:
                continue
            for raw in blob_list(client.lrange(inflight_key(queue, consumer), 0, -1)):
                info = _info(raw, queue, hostname, pid)
                if info is not None:
                    found.append(info)
    return found


def install_active(queues: list[str], client: Callable[[], redis.Redis]) -> None:
    """Answer ``inspect active`` from the in-flight lists (Celery's requests, none, too)."""

    @control.inspect_command()  # type: ignore[untyped-decorator]  # Celery: untyped
    def active(state: Any, safe: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
        try:
            return held_messages(client(), list(queues), state.hostname, os.getpid())
        except redis.RedisError as exc:
            log.warning("inspect_active_failed", error=repr(exc))
            return []
