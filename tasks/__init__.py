"""The contract between producers and workers: names, wire schema, message envelope, codecs.

Imports neither torch nor any worker code, so a producer-only install can use all of it. The
Celery app factory lives in `embedq.tasks.app`, imported only by what runs Celery (the worker,
Flower, `embedq up`): a producer never needs Celery itself.

``embed`` (the Celery task for Celery users, `embedq.tasks.embed_task`) and ``vectors_of`` (its
result as numpy, `embedq.tasks.celery_results`) load on first use, so importing this package
still imports no Celery.
"""

from embedq.tasks.names import EMBED_TASK, queue_name, route_queue
from embedq.tasks.schema import SCHEMA_VERSION, EmbedRequest, EmbedResult
from embedq.tasks.wire import Reply

__all__ = [
    "EMBED_TASK",
    "SCHEMA_VERSION",
    "EmbedRequest",
    "EmbedResult",
    "Reply",
    "embed",
    "queue_name",
    "route_queue",
    "vectors_of",
]


def __getattr__(name: str) -> object:
    """``embed`` and ``vectors_of``, imported when first asked for (they bring in Celery)."""
    if name == "embed":
        from embedq.tasks.embed_task import embed

        return embed
    if name == "vectors_of":
        from embedq.tasks.celery_results import vectors_of

        return vectors_of
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
