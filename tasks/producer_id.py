"""The name of one producer process's reply list, under the producer id a deployment fixes.

``EMBEDQ_PRODUCER_ID=webapp`` makes every process of that producer read its replies from
``embedq:v1:reply:webapp:<pid>-<random>``, so one Redis ACL pattern (`reply_pattern`) gives the
``webapp`` user its own reply lists and no other producer's. Without an id the name is
``<pid>-<random>``, as before.
"""

from __future__ import annotations

import os
import uuid

from embedq.tasks.names import reply_key


def producer_reply_name(producer_id: str | None) -> str:
    """The per-process part of a reply key: unique to this process, prefixed by the id."""
    process = f"{os.getpid()}-{uuid.uuid4().hex}"
    return f"{producer_id}:{process}" if producer_id else process


def reply_pattern(producer_id: str) -> str:
    """The glob of every reply list of one producer id (ids cannot hold glob characters)."""
    return reply_key(f"{producer_id}:*")
