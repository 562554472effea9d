"""The contract between producers and workers: names, wire schema, message envelope, codecs.

Imports neither torch nor any worker code, so a producer-only install can use all of it. The
Celery app factory lives in `embedq.tasks.app`, imported only by what runs Celery (the worker,
Flower, `embedq up`): a producer never needs Celery itself.
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
    "queue_name",
    "route_queue",
]
