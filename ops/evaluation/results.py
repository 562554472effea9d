"""Where results go: a local JSON-lines history, and the broker Redis for the dashboard.

The file keeps every run on the machine that ran it; Redis keeps the latest few hundred so a
dashboard on any host shows the newest result per task and route without a shared disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from embedq.tasks.names import EVAL_RESULTS_KEY

KEPT_IN_REDIS = 200


def save(client: redis.Redis, history: Path, document: dict[str, Any]) -> None:
    """Append to the history file and push to Redis (newest first, capped)."""
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(document) + "\n")
    with client.pipeline(transaction=False) as pipe:
        pipe.lpush(EVAL_RESULTS_KEY, json.dumps(document))
        pipe.ltrim(EVAL_RESULTS_KEY, 0, KEPT_IN_REDIS - 1)
        pipe.execute()


def latest(client: redis.Redis) -> list[dict[str, Any]]:
    """The newest result per (task, route), newest first."""
    seen: set[tuple[str, str]] = set()
    newest: list[dict[str, Any]] = []
    for raw in client.lrange(EVAL_RESULTS_KEY, 0, -1):
        document = json.loads(raw)
        key = (document["task"], document["route"])
        if key not in seen:
            seen.add(key)
            newest.append(document)
    return newest
