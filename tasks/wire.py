"""The wire: embed messages as they lie on a queue, the replies and the dead-letter records.

Every fact two processes read off Redis bytes lives here and nowhere else; the Redis scripts
receive the header names as arguments. A queue is a Redis list of Celery task-protocol-2
envelopes in kombu's JSON layout, exactly what ``app.send_task`` writes, so Flower, ``celery
inspect`` and a plain Celery producer keep working. embedq's producer builds the envelope itself
(one ``LPUSH`` in a pipeline, no Celery machinery on the hot path) and adds headers a plain
Celery message lacks:

* `REPLY_HEADER`: the list its reply goes to, always under ``embedq:v1:reply:`` (no header:
  the Celery result backend);
* `ENQUEUED_HEADER`: wall-clock seconds at enqueue, for queue-wait and oldest-age figures;
* `TEXTS_HEADER`: how many texts the request holds, so a claim can count a batch in texts;
* `DEADLINE_HEADER`: wall-clock seconds after which no caller of the message waits any more
  (the latest of its rows' deadlines; each row's own is in the request). Celery's standard
  ``expires`` header is honoured the same way.

Headers are read by decoding the envelope's JSON, in Python and in Lua (``cjson``) alike, so a
change of separators or key order can never make the two count differently.

Reading is two steps so that a refusal can still be answered: `open_envelope` fails only on
garbage (then nobody can be told, and the message goes to the dead letters), `Envelope.request`
fails on a body embedq will not read (pickle, another schema version), and the producer named in
the envelope gets a typed failure.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from embedq.config.errors import PayloadError
from embedq.tasks.names import BULK_PRIORITY, EMBED_TASK, REPLY_NAMESPACE
from embedq.tasks.schema import SCHEMA_VERSION, EmbedRequest, EmbedResult, payload_error

MSGPACK = "application/x-msgpack"
JSON = "application/json"
ACCEPTED = (MSGPACK, JSON)
REPLY_HEADER = "embedq_reply"
ENQUEUED_HEADER = "embedq_enqueued_at"
TEXTS_HEADER = "embedq_texts"
DEADLINE_HEADER = "embedq_deadline"
DEAD_MARK = b"dead"  # a message's deliveries entry once it is dead-lettered
#: A result row's error when it was not computed because nobody waited for it any more.
DROPPED_ROW = "not computed: its caller's deadline passed or the caller cancelled"
RECORD_VERSION = 1
_SHOWN = 120


def message_id(raw: bytes) -> str:
    """The id a message's deliveries are counted under (what Lua's ``redis.sha1hex`` gives)."""
    return hashlib.sha1(raw).hexdigest()  # an identifier, not a signature


class GarbageMessageError(PayloadError):
    """A queue entry that is not a task message at all; it keeps the raw bytes."""

    def __init__(self, raw: bytes, problem: str) -> None:
        self.raw = raw
        shown = raw[:_SHOWN].decode("utf-8", "replace")
        super().__init__(f"queue entry is not a Celery task message ({problem}): {shown!r}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a task message a worker needs before it trusts the body."""

    raw: bytes
    task_id: str
    task: str
    reply_to: str | None
    enqueued_at: float | None
    texts: int
    deadline: float | None
    content_type: str
    body: bytes
    headers: Mapping[str, Any]

    def expired(self, now: float) -> bool:
        """True once no caller waits for this message any more."""
        return self.deadline is not None and self.deadline <= now

    def request(self) -> EmbedRequest:
        """The embed request in the body; a refused or malformed body is a `PayloadError`."""
        if self.task != EMBED_TASK:
            raise PayloadError(f"message {self.task_id} is a {self.task!r} task; embed queues "
                               f"carry only {EMBED_TASK!r}")
        if self.content_type not in ACCEPTED:
            raise PayloadError(f"message {self.task_id} has content type {self.content_type!r}; "
                               f"refused: embedq accepts only {' and '.join(ACCEPTED)}")
        try:
            body = (msgpack.unpackb(self.body, raw=False) if self.content_type == MSGPACK
                    else json.loads(self.body))
            args = body[0]
            payload = args[0]
        except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
            raise PayloadError(f"message {self.task_id} has no readable embed request: {exc}"
                               ) from exc
        return EmbedRequest.from_wire(payload)


def _number(headers: Mapping[str, Any], name: str) -> float | None:
    value = headers.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _celery_expires(value: object) -> float | None:
    """Celery's ``expires`` header (ISO 8601; naive means UTC, as Celery's default) in epoch
    seconds; anything unreadable is no deadline rather than a refused message."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    with contextlib.suppress(ValueError):
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    return None


def open_envelope(raw: bytes) -> Envelope:
    """Read a queue entry's envelope; anything that is not one is a `GarbageMessageError`."""
    try:
        envelope = json.loads(raw)
        headers = envelope["headers"]
        properties = envelope["properties"]
        body = envelope["body"]
        task_id = headers["id"]
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True)
        elif isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(task_id, str) or not isinstance(body, bytes):
            raise TypeError("task id or body of the wrong type")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise GarbageMessageError(raw, repr(exc)) from None
    reply_to = headers.get(REPLY_HEADER)
    if reply_to is not None and not (isinstance(reply_to, str)
                                     and reply_to.startswith(REPLY_NAMESPACE + ":")):
        raise GarbageMessageError(raw, f"reply list {reply_to!r} is outside {REPLY_NAMESPACE}")
    texts = _number(headers, TEXTS_HEADER)
    deadlines = [d for d in (_number(headers, DEADLINE_HEADER),
                             _celery_expires(headers.get("expires"))) if d is not None]
    return Envelope(
        raw=raw,
        task_id=task_id,
        task=str(headers.get("task")),
        reply_to=reply_to,
        enqueued_at=_number(headers, ENQUEUED_HEADER),
        texts=int(texts) if texts is not None and texts >= 1 else 1,
        deadline=min(deadlines) if deadlines else None,
        content_type=str(envelope.get("content-type")),
        body=body,
        headers=headers,
    )


def build_message(request: EmbedRequest, *, queue: str, reply_to: str, origin: str,
                  now: float, deadline: float | None = None, bulk: bool = False
                  ) -> tuple[str, bytes]:
    """``(task id, queue entry)`` for a request: what ``send_task`` would write, plus our headers.

    The task id is the request id, so a reply, a log line and a Flower row all name one id.
    """
    task_id = request.id
    body = msgpack.packb([[request.to_wire()], {}, {"callbacks": None, "errbacks": None,
                                                    "chain": None, "chord": None}])
    headers = {
        "lang": "py", "task": EMBED_TASK, "id": task_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0,
        "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": f"<{len(request.texts)} texts for {request.route!r}>", "kwargsrepr": "{}",
        "origin": origin, "ignore_result": False,
        REPLY_HEADER: reply_to, ENQUEUED_HEADER: now, TEXTS_HEADER: len(request.texts),
        DEADLINE_HEADER: deadline,
    }
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "binary",
        "content-type": MSGPACK,
        "headers": headers,
        "properties": {
            "correlation_id": task_id, "reply_to": reply_to, "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": BULK_PRIORITY if bulk else 0,
            "body_encoding": "base64", "delivery_tag": uuid.uuid4().hex,
        },
    }
    return task_id, json.dumps(envelope, separators=(", ", ": ")).encode()


@dataclass(frozen=True, slots=True)
class Reply:
    """What a worker pushes to a producer's reply list: a message's result, or why it failed.

    ``error_type`` names a class of `embedq.config.errors` (the producer raises that class), so a
    refusal reads the same on both sides of the queue.
    """

    task_id: str
    result: EmbedResult | None = None
    error_type: str = ""
    error: str = ""

    def to_wire(self) -> bytes:
        """msgpack bytes, ready for ``RPUSH``."""
        payload = {
            "v": SCHEMA_VERSION,
            "id": self.task_id,
            "result": self.result.to_wire() if self.result is not None else None,
            "error": [self.error_type, self.error] if self.result is None else None,
        }
        packed: bytes = msgpack.packb(payload, use_bin_type=True)
        return packed

    @classmethod
    def from_wire(cls, blob: bytes) -> Reply:
        """Parse a reply; anything malformed is a `PayloadError` that keeps the bytes."""
        try:
            payload = msgpack.unpackb(blob, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise payload_error(f"reply is not msgpack ({exc})", blob) from exc
        if not isinstance(payload, dict) or payload.get("v") != SCHEMA_VERSION:
            raise payload_error(f"reply is not a schema-{SCHEMA_VERSION} map", payload)
        task_id = payload.get("id")
        if not isinstance(task_id, str):
            raise payload_error("reply has no task id", payload)
        if payload.get("result") is not None:
            return cls(task_id, EmbedResult.from_wire(payload["result"]))
        error = payload.get("error")
        if not (isinstance(error, list) and len(error) == 2
                and all(isinstance(e, str) for e in error)):
            raise payload_error("reply has neither a result nor an error", payload)
        return cls(task_id, error_type=error[0], error=error[1])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-letter record: the message as it was on the queue, and why it is here.

    Records are msgpack arrays ``[version, reason, queue, at, deliveries, message bytes]``,
    binary-safe, so even garbage is kept exactly.
    """

    reason: str
    queue: str
    at: float
    deliveries: int
    raw: bytes

    def encode(self) -> bytes:
        """The record's bytes, as the dead-letter list holds them."""
        packed: bytes = msgpack.packb([RECORD_VERSION, self.reason, self.queue, self.at,
                                       self.deliveries, self.raw], use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, blob: bytes) -> DeadLetter:
        """Parse a record; one of another version is shown as such, never guessed at."""
        with contextlib.suppress(ValueError, TypeError, AttributeError,
                                 msgpack.UnpackException):
            row = msgpack.unpackb(blob, raw=True)
            if isinstance(row, list) and len(row) == 6 and row[0] == RECORD_VERSION:
                _, reason, queue, at, deliveries, raw = row
                return cls(reason.decode(), queue.decode(), float(at), int(deliveries),
                           bytes(raw))
        return cls("unreadable dead-letter record", "", 0.0, 0, blob)
