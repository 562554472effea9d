"""Is a worker on this host loaded and serving? The check behind the Kubernetes probes.

A worker process joins its queue's liveness set (`tasks.liveness`) only after its models are
loaded and the whole worker is ready, and refreshes the entry every
``EMBEDQ_LIVENESS_INTERVAL_S`` from a thread that runs beside the forward passes. So "this host
has an unexpired entry on the queue" means "the model is loaded and the consumer is alive",
which neither an open metrics port (the parent serves it before any model loads) nor a Celery
ping (the parent answers while a pool process is still loading) says. Consumer ids begin with
the host name, which in a pod is the pod's name.
"""

from __future__ import annotations

import socket
import time
from typing import cast

import redis

from embedq.tasks.names import live_key


def serving_here(client: redis.Redis, queue: str, host: str | None = None) -> bool:
    """True when a consumer on ``host`` (default: this one) has an unexpired entry on ``queue``."""
    prefix = f"{host or socket.gethostname()}:"
    members = cast(list[bytes], client.zrangebyscore(live_key(queue), time.time(), "+inf"))
    return any(member.decode("utf-8", "replace").startswith(prefix) for member in members)
