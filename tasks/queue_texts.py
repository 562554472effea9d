"""Texts waiting on a queue: the unit a worker consumes, which a list length no longer gives.

Producers coalesce, so one message carries from 1 to ``EMBEDQ_CHUNK_SIZE`` texts and a queue of
64 messages may hold 64 or 4,096 texts. Autoscalers (``embedq autoscale``, KEDA through the
dashboard's ``embedq_queue_texts_waiting``) size pools on texts. Every message carries its text
count in the texts header (`embedq.tasks.wire.TEXTS_HEADER`); one script reads it inside Redis,
so nothing but the totals crosses the network. A script blocks Redis while it runs, so it reads
a sample: a queue of up to ``2 x EACH_END`` messages exactly, a longer one from its ``EACH_END``
oldest and ``EACH_END`` newest messages, their mean scaled up to the depth. (Twenty queues of
1,000 messages of 64 texts cost 6 to 8 ms here on a loaded 2-core machine; reading up to 256
messages a queue cost 200 ms. An exact figure would be a counter that producers add to and the
claim script takes from: the producer and the claim script are the place for it.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib.resources import files
from typing import cast

import redis

from embedq.tasks.names import bulk_queue
from embedq.tasks.wire import TEXTS_HEADER

EACH_END = 16
_SCRIPT = files("embedq.tasks").joinpath("queue_texts.lua").read_text(encoding="utf-8")
_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()  # Redis names scripts by their SHA-1


def texts_waiting(client: redis.Redis, queues: Sequence[str],
                  each_end: int = EACH_END) -> list[int]:
    """Texts waiting on each of ``queues`` (its interactive and its bulk list together), in
    order, in one round trip (a script)."""
    if not queues:
        return []
    lists = [name for queue in queues for name in (queue, bulk_queue(queue))]
    # EVALSHA_RO, not EVALSHA: Redis lets a read-only ACL user (the dashboard's) run a script
    # on keys it may only read this way alone (issue 24).
    arguments: list[str | int] = [*lists, each_end, TEXTS_HEADER]
    try:
        reply = client.evalsha_ro(_SHA, len(lists), *arguments)
    except redis.exceptions.NoScriptError:
        client.script_load(_SCRIPT)
        reply = client.evalsha_ro(_SHA, len(lists), *arguments)
    replies = cast(list[list[int]], reply)
    counts = [int(texts) if read == 0 or depth <= read else round(texts * depth / read)
              for depth, texts, read in replies]
    return [counts[2 * i] + counts[2 * i + 1] for i in range(len(queues))]
