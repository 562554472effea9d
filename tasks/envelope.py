"""Embed messages as they lie on a queue: Celery's task protocol 2 in kombu's Redis envelope.

A queue is a Redis list of JSON envelopes, exactly what ``app.send_task`` writes, so Flower,
``celery inspect`` and a plain Celery producer all keep working. embedq's producer builds the
envelope itself (one ``LPUSH`` in a pipeline, no Celery machinery on the hot path) and adds three
headers a plain Celery message lacks:

* ``embedq_reply``: the list its reply goes to, always under ``embedq:v1:reply:`` (no header:
  the Celery result backend, as before);
* ``embedq_enqueued_at``: wall-clock seconds at enqueue, for queue-wait and oldest-age metrics;
* ``embedq_texts``: how many texts the request holds, so a worker can claim a batch by texts.

Reading is two steps so that a refusal can still be answered: `open_envelope` fails only on
garbage (then nobody can be told, and the message goes to the dead letters), `Envelope.request`
fails on a body embedq will not read (pickle, another schema version), and the producer named in
the envelope gets a typed failure.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack

from embedq.config.errors import PayloadError
from embedq.tasks.names import EMBED_TASK, REPLY_NAMESPACE
from embedq.tasks.schema import EmbedRequest

MSGPACK = "application/x-msgpack"
JSON = "application/json"
ACCEPTED = (MSGPACK, JSON)
TEXTS_HEADER = "embedq_texts"
_SHOWN = 120


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
    content_type: str
    body: bytes

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


def _header(headers: dict[str, Any], name: str, kind: type) -> Any:
    value = headers.get(name)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


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
    enqueued = _header(headers, "embedq_enqueued_at", (int, float))  # type: ignore[arg-type]
    reply_to = _header(headers, "embedq_reply", str)
    if reply_to is not None and not reply_to.startswith(REPLY_NAMESPACE + ":"):
        raise GarbageMessageError(raw, f"reply list {reply_to!r} is outside {REPLY_NAMESPACE}")
    return Envelope(
        raw=raw,
        task_id=task_id,
        task=str(headers.get("task")),
        reply_to=reply_to,
        enqueued_at=float(enqueued) if enqueued is not None else None,
        content_type=str(envelope.get("content-type")),
        body=body,
    )


def build_message(request: EmbedRequest, *, queue: str, reply_to: str, origin: str,
                  now: float) -> tuple[str, bytes]:
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
        "embedq_reply": reply_to, "embedq_enqueued_at": now,
        TEXTS_HEADER: len(request.texts),
    }
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "binary",
        "content-type": MSGPACK,
        "headers": headers,
        "properties": {
            "correlation_id": task_id, "reply_to": reply_to, "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": uuid.uuid4().hex,
        },
    }
    return task_id, json.dumps(envelope, separators=(", ", ": ")).encode()
