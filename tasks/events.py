"""Celery task events, written straight into a pipeline, so Flower shows every request.

embedq moves messages with its own Redis commands, so Celery never sees a task run; these events
are how Flower (and ``celery events``) still see each request be sent, received and succeed or
fail. They use Celery's own format: a kombu envelope whose JSON body is a list of events, the
way Celery's worker buffers task events, published on ``/<db>.celeryev/task.multi``. One
``PUBLISH`` carries a whole batch's events inside the pipeline that writes its replies.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from typing import Any

from embedq.tasks.names import EVENT_EXCHANGE, event_channel

_ROUTING_KEY = "task.multi"


def task_event(event_type: str, task_id: str, hostname: str, **fields: Any) -> dict[str, Any]:
    """One event dict as Celery's EventDispatcher makes it (``task-received``, ...)."""
    return {"hostname": hostname, "utcoffset": -time.timezone // 3600, "pid": os.getpid(),
            "clock": 0, "uuid": task_id, "timestamp": time.time(), "type": event_type, **fields}


def event_message(events: list[dict[str, Any]], hostname: str, db: int) -> tuple[str, bytes]:
    """``(channel, message)`` that publishes ``events`` in one go."""
    body = json.dumps(events).encode()
    envelope = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": hostname},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": EVENT_EXCHANGE, "routing_key": _ROUTING_KEY},
            "priority": 0, "body_encoding": "base64", "delivery_tag": uuid.uuid4().hex,
        },
    }
    return event_channel(db, "task-multi"), json.dumps(envelope).encode()
