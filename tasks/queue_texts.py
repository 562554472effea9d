"""Texts waiting on a queue: the unit a worker consumes, which a list length no longer gives.

Producers coalesce, so one message carries from 1 to ``EMBEDQ_CHUNK_SIZE`` texts and a queue of
64 messages may hold 64 or 4,096 texts. Autoscalers (``embedq autoscale``, KEDA through the
dashboard's ``embedq_queue_texts_waiting``) size pools on texts. Every message carries its text
count in the ``embedq_texts`` header; one script adds them up inside Redis, so nothing but the
totals crosses the network. Its cost grows with the entries read, so it reads at most ``most``
of the oldest entries per queue and, for a longer queue, scales their mean up to the depth:
exact up to ``most`` messages, an estimate from the oldest ``most`` beyond.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import cast

import redis

from embedq.tasks.envelope import TEXTS_HEADER

MOST_ENTRIES = 256
_SCRIPT = files("embedq.tasks").joinpath("queue_texts.lua").read_text(encoding="utf-8")


def texts_waiting(client: redis.Redis, queues: Sequence[str],
                  most: int = MOST_ENTRIES) -> list[int]:
    """Texts waiting on each of ``queues``, in order, in one round trip (a script)."""
    if not queues:
        return []
    script = client.register_script(_SCRIPT)  # EVALSHA, loaded again if Redis forgot it
    replies = cast(list[list[int]], script(keys=list(queues), args=[most, TEXTS_HEADER]))
    waiting = []
    for depth, texts, read in replies:
        if read == 0 or depth <= read:
            waiting.append(int(texts))
        else:
            waiting.append(round(texts * depth / read))
    return waiting
