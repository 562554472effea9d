"""Why a request is not answered yet: the sentence a caller gets with its timeout.

Broker down, no live worker, or live but busy workers (the request stays queued in every case).
Answered from the sender's last load reading when it is fresh, so that under overload a caller
is told at its deadline and not one Redis round trip later.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import redis

from embedq.config.errors import (
    BrokerUnavailableError,
    EmbedqError,
    EmbedTimeoutError,
    NoLiveWorkerError,
)
from embedq.config.settings import Settings
from embedq.producer.connections import BrokerLink
from embedq.producer.jobs import Job
from embedq.producer.replies import probe
from embedq.tasks.connections import safe_url
from embedq.tasks.liveness import live_consumers
from embedq.tasks.names import route_queue

if TYPE_CHECKING:
    from embedq.producer.client import EmbeddingClient

_FRESH_READING_S = 5.0  # a load reading this recent answers without a round trip


def broker_down(settings: Settings, exc: BaseException) -> BrokerUnavailableError:
    """The error for a broker that cannot be reached (its URL without the password)."""
    return BrokerUnavailableError(
        f"the broker at {safe_url(settings.broker)} cannot be reached "
        f"({type(exc).__name__}: {exc}); "
        "requests already sent are kept and answered once it is back")


def why_not_done(client: EmbeddingClient, connections: BrokerLink, job: Job, waited: float
                 ) -> EmbedqError:
    """The error for ``job`` not done after ``waited`` seconds."""
    down = connections.dispatcher.broker_error or connections.listener.broker_error
    if down is not None:
        return broker_down(connections.settings, down)
    route = job.spec.route
    messages = connections.outstanding.of_job(job)
    queue = messages[0].queue if messages else route_queue(client.serving(route))
    reading = connections.dispatcher.load.reading(queue)
    if reading is not None and time.monotonic() - reading.at < _FRESH_READING_S:
        consumers = reading.consumers
        where = f"behind about {reading.backlog:,} queued texts"
    else:
        try:
            consumers = live_consumers(connections.broker, [queue])[0]
            where = probe(connections.broker, messages[0]) if messages else "answered"
        except (redis.RedisError, OSError) as exc:
            return broker_down(connections.settings, exc)
    served = client.serving(route)
    if consumers == 0:
        return NoLiveWorkerError(
            f"no reply within {waited:g}s for use case {route.name!r}: no live worker "
            f"consumes {queue}; start one: embedq worker --model {served.model} "
            f"--precision {served.precision.value} (the request stays queued)")
    return EmbedTimeoutError(
        f"no reply within {waited:g}s for use case {route.name!r}: the message is {where} "
        f"on {queue}, which {consumers} live consumer(s) serve; they are busy or slow "
        "(embedq route status shows the backlog)")
