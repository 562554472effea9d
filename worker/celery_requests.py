"""Reading the embed call of a Celery producer's message: a short call or a full request.

``embed.delay(texts, use_case="search", dim=256)`` sends only the call; the worker resolves it
against its own route table (`embedq.tasks.embed_task.resolve`) and refuses a use case whose
queue is not the queue the message came from, so a message can never make a worker serve a
route it was not deployed for. A full request (what ``send_task("embedq.embed",
args=[request])`` sends, as embedq's own producer does) is read as before.

Celery's ``eta``/``countdown`` is refused with a reason rather than honoured: an embed worker
claims what is waiting and computes it at once, and holding a message until its time would hold
a claim (and its batch) for as long. The refusal goes to the dead letters and to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgpack

from embedq.config.errors import PayloadError
from embedq.config.registry import Registry
from embedq.tasks.embed_task import resolve
from embedq.tasks.names import EMBED_TASK, route_queue
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import ACCEPTED, JSON, Envelope

Reader = Callable[[Envelope], EmbedRequest]


def header_time(stamp: object) -> datetime | None:
    """A Celery ``eta``/``expires`` header as an aware time (naive is UTC, as Celery writes it);
    None when absent or unreadable."""
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _future(stamp: object) -> bool:
    when = header_time(stamp)
    return when is not None and when > datetime.now(UTC)


def _call(envelope: Envelope) -> tuple[list[Any], dict[str, Any]]:
    """The message's args and kwargs (decoding errors are the caller's refusal)."""
    body = (json.loads(envelope.body) if envelope.content_type == JSON
            else msgpack.unpackb(envelope.body, raw=False))
    args, kwargs = body[0], body[1]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TypeError("args must be a list and kwargs a map")
    return args, kwargs


def message_reader(registry: Registry, queue: str, max_text_chars: int) -> Reader:
    """The consumer's way to read a message's request on ``queue``."""

    def read(envelope: Envelope) -> EmbedRequest:
        if (envelope.reply_to is not None or envelope.task != EMBED_TASK
                or envelope.content_type not in ACCEPTED):
            return envelope.request()  # embedq's producer, or a message refused there
        try:
            args, kwargs = _call(envelope)
        except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException):
            return envelope.request()  # names what is unreadable
        if _future(envelope.headers.get("eta")):
            raise PayloadError(
                f"message {envelope.task_id} has eta {envelope.headers['eta']} (a countdown or "
                f"eta); embed queues compute what is waiting at once and hold nothing until later: "
                f"send it without eta/countdown when it is due")
        if (args and isinstance(args[0], dict)) or (not args and "texts" not in kwargs):
            return envelope.request()  # a full request (by hand, an older producer) or none
        request = resolve(registry, args, kwargs, task_id=envelope.task_id,
                          max_text_chars=max_text_chars)
        expected = route_queue(registry.route(request.route))
        if expected != queue:
            raise PayloadError(
                f"message {envelope.task_id}: use case {request.route!r} is served on queue "
                f"{expected}, but this message came on {queue}; send it with "
                f"embed.delay(texts, use_case={request.route!r}), which routes by use case")
        return request

    return read
