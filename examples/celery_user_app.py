"""A Celery user's own app that embeds with embedq (the README's "From Celery" shows this file).

Its worker serves the user's tasks; embedq's workers serve the embed queues:

    celery -A examples.celery_user_app worker            # the user's tasks, queue "celery"
    embedq worker -m minilm -p fp32                       # embed.minilm.fp32

The app is an ordinary Celery app (JSON by default, as Celery's own default). ``embed`` binds to
it like any shared task and routes itself by use case; the tasks after it (callbacks, chain steps,
a chord's body) are sent on by the embed worker, to the queue in their signature or else to
Celery's default queue ``celery``, which this app's worker consumes.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery, chain, chord, group

from embedq.tasks import embed, vectors_of

REDIS_URL = os.environ.get("EMBEDQ_REDIS_URL", "redis://localhost:6379/0")
SERIALIZER = os.environ.get("USER_SERIALIZER", "json")  # the tests run msgpack too

app = Celery("userapp", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(task_serializer=SERIALIZER, result_serializer=SERIALIZER,
                accept_content=["json", "msgpack"], result_accept_content=["json", "msgpack"])


@app.task(name="userapp.store")
def store(result: dict[str, Any]) -> dict[str, Any]:
    """What a pipeline does with one embed result: here, report what it holds."""
    array = vectors_of(result)
    return {"rows": int(array.shape[0]), "dim": int(array.shape[1]), "model": result["model"],
            "vectors": array.tolist()}


@app.task(name="userapp.collect")
def collect(results: list[dict[str, Any]]) -> list[list[float]]:
    """A chord's body: every part's vectors, in the order the parts were given."""
    rows: list[list[float]] = vectors_of(results).tolist()
    return rows


@app.task(name="userapp.failed")
def failed(task_id: str) -> str:
    """An errback: Celery calls it with the failed task's id; here it notes the failure."""
    with redis.Redis.from_url(REDIS_URL) as client:
        client.set(f"userapp:failed:{task_id}", "1", ex=3600)
    return task_id


def pipeline(texts: list[str], use_case: str = "search") -> Any:
    """A chain: embed, then store."""
    return chain(embed.s(texts, use_case=use_case), store.s()).apply_async()


def batch_of_many(docs: list[str], use_case: str = "search") -> Any:
    """A chord: one embed task per document, then one callback with every result."""
    return chord(embed.s([doc], use_case=use_case) for doc in docs)(collect.s())


def embed_each(docs: list[str], use_case: str = "search") -> Any:
    """A group: one embed task per document, results in order."""
    return group(embed.s([doc], use_case=use_case) for doc in docs).apply_async()
