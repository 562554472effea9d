"""What one process of an `EmbeddingClient` holds: Redis clients, the two threads, the load book.

Created on first use and again in a forked child (gunicorn ``--preload``, Celery, multiprocessing),
where the parent's threads do not exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from embedq.config.errors import EmbedqError
from embedq.config.registry import RouteSpec
from embedq.config.settings import Settings
from embedq.producer.dispatch import Dispatcher
from embedq.producer.outstanding import Outstanding
from embedq.producer.read_through import ReadThrough
from embedq.producer.replies import POLL_S, ReplyListener
from embedq.tasks.connections import redis_client
from embedq.tasks.names import reply_key
from embedq.tasks.producer_id import producer_reply_name
from embedq.tasks.redis_guard import RedisGuard, guarded_client

_CLIENT_TIMEOUT_S = 5.0


class Connections:
    """Redis clients and the sender and reply-listener threads of one process."""

    def __init__(self, settings: Settings, serving: Callable[[RouteSpec], RouteSpec],
                 read_through: bool) -> None:
        self.pid = os.getpid()
        self.reply_key = reply_key(producer_reply_name(settings.producer_id))
        self.broker = redis_client(settings.broker, master_name=settings.sentinel_master,
                                   socket_timeout=_CLIENT_TIMEOUT_S, socket_keepalive=True,
                                   socket_connect_timeout=_CLIENT_TIMEOUT_S)
        self.replies = redis_client(settings.broker, master_name=settings.sentinel_master,
                                    socket_timeout=POLL_S + _CLIENT_TIMEOUT_S,
                                    socket_keepalive=True, socket_connect_timeout=_CLIENT_TIMEOUT_S)
        self.liveness = RedisGuard(guarded_client(settings, settings.broker), what="broker",
                                   backoff_max_s=settings.cache_backoff_max_s)
        self.read_through = ReadThrough(settings) if read_through else None
        self.outstanding = Outstanding()
        self.dispatcher = Dispatcher(settings, self.broker, self.outstanding, self.reply_key,
                                     serving, self.read_through)
        self.listener = ReplyListener(
            settings, self.replies, self.reply_key, self.outstanding, self.dispatcher.resend,
            lambda job, rows: self.dispatcher.submit(job, rows, alone=True))

    def close(self) -> None:
        """Stop both threads, fail whoever still waits, close the connections."""
        self.dispatcher.close()
        self.listener.close()
        closed = EmbedqError("the embedq client was closed before the reply arrived")
        for message in self.outstanding.drain():
            for job, _, _ in message.parts:
                job.fail(closed)
        for resource in (self.broker, self.replies, self.liveness, self.read_through):
            if resource is not None:
                resource.close()
