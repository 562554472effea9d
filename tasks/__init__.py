"""The contract between producers and workers: app factory, names, wire schema, vector codec.

Imports neither torch nor any worker code, so a producer-only install can use all of it.
"""

from embedq.tasks.app import create_app
from embedq.tasks.names import EMBED_TASK, queue_name, route_queue
from embedq.tasks.schema import SCHEMA_VERSION, EmbedRequest, EmbedResult

__all__ = [
    "EMBED_TASK",
    "SCHEMA_VERSION",
    "EmbedRequest",
    "EmbedResult",
    "create_app",
    "queue_name",
    "route_queue",
]
