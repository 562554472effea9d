"""What Celery's worker does once a task is over, done for embed messages of Celery producers.

embedq's consumer replaces Celery's on the embed queues, so it must also do what Celery's
``app/trace.py`` (``build_tracer``) does after a task: on success, send the ``link`` callbacks
and the next step of a ``chain`` with the result, then ``backend.mark_as_done`` (store the
result, and count the part of a chord: the Redis backend's counter, whose last part sends the
chord's body); on failure ``backend.mark_as_failure`` (store it, count the chord part, fail the
rest of the chain, call the ``link_error`` errbacks); a revoked or expired message gets
``backend.mark_as_revoked``, as Celery's ``Request.revoked`` does. These are Celery's own calls,
given a request ``Context`` built from the message as Celery's ``Request`` builds it.

Everything goes out in the serializer the message came in: a Celery app reads results and
accepts messages in its own serializer, so a message sent as JSON gets a JSON result, and its
callbacks and chord body are sent as JSON (`CeleryApps`).
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis
from celery import Celery, group, signature, states
from celery.app.task import Context
from kombu.exceptions import OperationalError

from embedq.config.settings import Settings
from embedq.tasks.app import create_app
from embedq.tasks.celery_results import JSON, MSGPACK, rebuildable
from embedq.tasks.wire import Envelope

_SERIALIZERS = {"application/json": JSON, "application/x-msgpack": MSGPACK}


@dataclass(eq=False)
class CeleryApps:
    """The worker's Celery app (msgpack) and, made on first need, its JSON twin."""

    app: Celery
    settings: Settings
    _twins: dict[str, Celery] = field(default_factory=dict)

    def for_message(self, envelope: Envelope) -> tuple[Celery, str]:
        """The app that answers ``envelope`` in its own serializer, and that serializer."""
        serializer = _SERIALIZERS.get(envelope.content_type, MSGPACK)
        if serializer == self.app.conf.result_serializer:
            return self.app, serializer
        twin = self._twins.get(serializer)
        if twin is None:
            twin = create_app(self.settings, name=f"embedq-{serializer}")
            twin.conf.update(task_serializer=serializer, result_serializer=serializer,
                             task_track_started=self.app.conf.task_track_started,
                             task_inherit_parent_priority=self.app.conf.task_inherit_parent_priority)
            self._twins[serializer] = twin
        return twin, serializer


def message_context(envelope: Envelope, hostname: str) -> Context:
    """The request ``Context`` Celery's worker would build for ``envelope``: its headers, the
    body's args, kwargs and canvas options (callbacks, errbacks, chain, chord)."""
    message = json.loads(envelope.raw)  # parsed before (`open_envelope`): a JSON map
    headers, properties = (_map(message.get(part)) for part in ("headers", "properties"))
    try:
        body = (json.loads(envelope.body) if envelope.content_type == "application/json"
                else msgpack.unpackb(envelope.body, raw=False))
        args, kwargs, embed = body
    except (ValueError, TypeError, msgpack.UnpackException):
        args, kwargs, embed = [], {}, {}
    delivery = _map(properties.get("delivery_info"))
    delivery.setdefault("priority", properties.get("priority"))
    request: dict[str, Any] = {
        **headers,
        "args": args, "kwargs": kwargs, "delivery_info": delivery,
        "reply_to": properties.get("reply_to"),
        "correlation_id": properties.get("correlation_id", envelope.task_id),
        "hostname": hostname, "is_eager": False,
        **_map(embed),
        "id": envelope.task_id,
    }
    return Context(request)


def _map(value: object) -> dict[str, Any]:
    """A message part that should be a map, as one (anything else: empty)."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _priority(app: Celery, request: Context) -> Any:
    if not app.conf.task_inherit_parent_priority:
        return None
    return request.delivery_info.get("priority")


def _send(app: Celery, publish: Any, *args: Any, **kwargs: Any) -> Any:
    """Publish as trace.py does (through kombu's publish retries for callbacks)."""
    retry = getattr(app.amqp, "_retry_publish", None)
    return retry(publish, *args, **kwargs) if retry is not None else publish(*args, **kwargs)


def dispatch_callbacks_and_chain(app: Celery, request: Context, retval: Any) -> list[Any]:
    """Send the ``link`` callbacks and the next chain step with ``retval``, exactly as
    ``build_tracer``'s ``_dispatch_callbacks_and_chain`` does; returns what was sent (the
    stored result's ``children``)."""
    parent_id, root_id = request.id, request.root_id or request.id
    priority = _priority(app, request)
    options = {"parent_id": parent_id, "root_id": root_id, "priority": priority}
    sent: list[Any] = []
    callbacks = request.callbacks or []
    if len(callbacks) > 1:
        sigs: list[Any] = []
        groups: list[Any] = []
        for sig in callbacks:
            sig = signature(sig, app=app)
            (groups if isinstance(sig, group) else sigs).append(sig)
        for group_ in groups:
            sent.append(_send(app, group_.apply_async, (retval,), **options))
        if sigs:
            sent.append(_send(app, group(sigs, app=app).apply_async, (retval,), **options))
    elif callbacks:
        sent.append(_send(app, signature(callbacks[0], app=app).apply_async, (retval,),
                          **options))
    chain = request.chain
    if chain:
        step = signature(chain[-1], app=app)
        sent.append(_send(app, step.apply_async, (retval,), chain=chain[:-1], **options))
    return [result for result in sent if result is not None]


def finish_success(app: Celery, request: Context, retval: Any) -> None:
    """Callbacks and chain first (so the stored result lists them as children), then store
    the result and count the chord part: trace.py's order. A callback Celery cannot send (a
    malformed signature) fails the task instead, as trace.py's ``on_error`` does; a broker
    outage is raised for the consumer to retry."""
    try:
        request.children.extend(dispatch_callbacks_and_chain(app, request, retval))
    except (OperationalError, redis.RedisError, OSError):
        raise
    except Exception as exc:
        tb = "".join(traceback.format_exception(exc))
        app.backend.mark_as_failure(request.id, exc, tb, request=request)
        return
    app.backend.mark_as_done(request.id, retval, request)


def failure_traceback(error: BaseException, hostname: str, queue: str) -> str:
    """A traceback for ``AsyncResult.traceback``: where it happened and the error's own frames
    (an error found in a request, not raised by code, has only its class and message)."""
    where = f"raised by embedq worker {hostname} serving {queue}\n"
    return where + "".join(traceback.format_exception(error))


def finish_failure(app: Celery, request: Context, error: BaseException, tb: str) -> None:
    """Store the failure as Celery does; chord part, chain failure and errbacks follow."""
    app.backend.mark_as_failure(request.id, rebuildable(error), tb, request=request)


def finish_revoked(app: Celery, request: Context, reason: str) -> None:
    """``REVOKED`` with the reason, and the chord part counted, as ``Request.revoked`` does."""
    app.backend.mark_as_revoked(request.id, reason, request=request)


def mark_started(app: Celery, request: Context, hostname: str) -> None:
    """``STARTED`` as ``task_track_started`` makes Celery's worker store it."""
    app.backend.store_result(request.id, {"pid": os.getpid(), "hostname": hostname},
                             states.STARTED, request=request)
