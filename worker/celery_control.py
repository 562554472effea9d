"""Celery's revoke, ``expires`` and ``task_track_started`` on embed queues.

**Revoke.** ``app.control.revoke(task_id)`` is a broadcast that each worker's parent process
receives (Celery's pidbox) and keeps in its memory (``worker.state.revoked``); embedq's
consumers run in the pool processes and on other hosts, where that memory is not. So an embed
worker's parent also writes every revoked id into one sorted set in the broker's Redis
(`REVOKED_KEY`, scored by when, kept as long as Celery keeps revokes: ``REVOKE_EXPIRES``), and
the consumers ask it once per batch which of their messages' ids are in it (`revoked_ids`, one
``ZMSCORE``). Any embed worker that is up when the revoke is sent records it for all of them.
Unlike Celery 5.7's own handler, the parent does not write ``REVOKED`` into the result backend
at once: the consumer that drops the message does, in the serializer the message came in, and
counts its chord part (Celery's backend write would use the worker's msgpack, which a JSON app
cannot read). Until the message is reached its state stays ``PENDING``.

**Expires.** The consumer drops a message whose ``expires`` has passed (it is the message's
deadline, `embedq.tasks.wire`) and calls ``Outbox.revoked``, which does what Celery's
``Request.revoked`` does: ``REVOKED`` ("expired"), chord part counted, no compute.

**Started.** With ``task_track_started`` the task is stored ``STARTED`` before its forward
pass, as Celery's tracer does, and Flower gets ``task-started``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
import structlog
from celery.worker import control, state

from embedq.tasks.events import event_message, task_event
from embedq.tasks.names import KEY_PREFIX
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import Envelope
from embedq.worker.celery_canvas import mark_started, message_context
from embedq.worker.replies import Outbox

log = structlog.get_logger(__name__)
REVOKED_KEY = f"{KEY_PREFIX}:revoked"  # sorted set: task id -> when it was revoked
REFUSED: list[str] = []  # why this process's worker refused to start (for `embedq worker`)
Group = list[tuple[Envelope, EmbedRequest]]


def record_revoked(client: redis.Redis, task_ids: Iterable[str], now: float | None = None
                   ) -> None:
    """Add ``task_ids`` to the revoked set and forget revokes older than Celery keeps them."""
    ids = list(task_ids)
    if not ids:
        return
    at = time.time() if now is None else now
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(REVOKED_KEY, dict.fromkeys(ids, at))
        pipe.zremrangebyscore(REVOKED_KEY, "-inf", at - state.REVOKE_EXPIRES)
        pipe.zremrangebyrank(REVOKED_KEY, 0, -state.REVOKES_MAX - 1)
        pipe.execute()


def revoked_ids(client: redis.Redis, task_ids: list[str]) -> set[str]:
    """Which of ``task_ids`` were revoked with ``app.control.revoke`` (one round trip)."""
    if not task_ids:
        return set()
    scores = client.zmscore(REVOKED_KEY, task_ids)
    return {task_id for task_id, score in zip(task_ids, scores, strict=True) if score is not None}


def install_revoke_recorder(client: Callable[[], redis.Redis]) -> None:
    """Make this worker's ``revoke`` control command record the ids for embedq's consumers
    (and still keep them in ``worker.state.revoked``, so ``inspect revoked`` lists them)."""

    @control.control_command(  # type: ignore[untyped-decorator]  # Celery: untyped
        variadic="task_id", signature="[id1 [id2 [... [idN]]]]")
    def revoke(panel: Any, task_id: Any, terminate: bool = False, signal: Any = None,
               **kwargs: Any) -> dict[str, str]:
        ids = {str(one) for one in (task_id if isinstance(task_id, list | tuple) else [task_id])
               if one}
        state.revoked.update(ids)
        try:
            record_revoked(client(), ids)
        except redis.RedisError as exc:
            log.warning("revoke_not_recorded", task_ids=sorted(ids), error=repr(exc))
            return {"error": f"tasks {sorted(ids)} not recorded as revoked: {exc!r}"}
        log.info("tasks_revoked", task_ids=sorted(ids), terminate=terminate)
        return {"ok": f"tasks {ids} flagged as revoked"}


def celery_gate(client: redis.Redis) -> Callable[[Group, Outbox], Group]:
    """The consumer's last look at a group before its forward pass (Celery producers'
    messages only): drop the revoked, mark the rest started. Expired messages never get here:
    the consumer drops them by their deadline (Celery's ``expires`` included)."""

    def gate(group: Group, outbox: Outbox) -> Group:
        celery = [envelope for envelope, _ in group if envelope.reply_to is None]
        if not celery:
            return group
        revoked = revoked_ids(client, [envelope.task_id for envelope in celery])
        kept: Group = []
        for envelope, request in group:
            if envelope.reply_to is None and envelope.task_id in revoked:
                outbox.revoked(envelope, "revoked")
            else:
                kept.append((envelope, request))
        _started([e for e, _ in kept if e.reply_to is None], client, outbox)
        return kept

    return gate


def _started(envelopes: list[Envelope], client: redis.Redis, outbox: Outbox) -> None:
    target = outbox.target
    apps, hostname = target.celery, target.hostname
    if not envelopes:
        return
    if apps is not None and apps.app.conf.task_track_started:
        for envelope in envelopes:
            app, _ = apps.for_message(envelope)
            mark_started(app, message_context(envelope, hostname), hostname)
    if target.events:
        channel, message = event_message(
            [task_event("task-started", e.task_id, hostname) for e in envelopes], hostname,
            target.db)
        client.publish(channel, message)


def scaling_refusal(worker: Any) -> str | None:
    """Why a Celery worker option cannot work on an embed worker, and what to use instead.

    The pool processes run embedq's consumers, not Celery tasks: Celery's autoscaler (which
    grows the pool from the tasks Celery's consumer receives) would never grow it, and the
    per-child limits (checked after each Celery task) would never recycle a process.
    ``--concurrency`` works as documented: that many pool processes, each with its consumers.
    """
    if getattr(worker, "autoscale", None):
        return ("--autoscale does not work on an embed worker: Celery's autoscaler sizes the "
                "pool from tasks its own consumer receives, and embed queues are read by "
                "embedq's consumers. Use --concurrency N for a fixed pool and start more "
                "workers of the queue to scale out; to size pools by backlog, run `embedq "
                "autoscale` (or `embedq up --autoscale`), or KEDA on Kubernetes (`embedq k8s "
                "render`)")
    if getattr(worker, "max_tasks_per_child", None):
        return ("--max-tasks-per-child does not work on an embed worker: its pool processes "
                "never run Celery tasks, so Celery would never recycle them. Restart the worker "
                "(a rolling restart) to renew its processes")
    if getattr(worker, "max_memory_per_child", None):
        return ("--max-memory-per-child does not work on an embed worker: Celery checks it "
                "after each Celery task, and its pool processes run none. Bound the memory "
                "cache with EMBEDQ_CACHE_MEMORY_BYTES and the process with a container limit")
    return None


def refuse_scaling_options(worker: Any) -> None:
    """Stop a worker started with an option it cannot honour, saying what to use instead."""
    refused = scaling_refusal(worker)
    if refused is not None:
        log.error("worker_option_refused", reason=refused)
        REFUSED.append(refused)
        raise SystemExit(f"embedq: {refused}")
