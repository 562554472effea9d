"""`EmbeddingClient`: validate texts, resolve the route, coalesce, gather numpy arrays.

The producer knows use cases, not models: the route table decides model, precision, dimension
and queue, so a web app can never make a worker load a path or a class. Texts are checked here,
before anything is enqueued, with the same rules the worker applies.

One client is meant to be shared by every thread of a process and by its event loop: what they
share is the dispatcher (one sender thread that coalesces concurrent calls into few messages),
the reply listener (one thread reading this process's reply list), the outstanding-message table
and Redis connection pools, each safe to share. After a fork (gunicorn, Celery, multiprocessing)
the child starts its own on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import redis

from embedq.config.errors import (
    BrokerUnavailableError,
    EmbedqError,
    EmbedTimeoutError,
    InvalidInputError,
    NoLiveWorkerError,
)
from embedq.config.prompts import resolve_prompt
from embedq.config.registry import Registry, RouteSpec, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.producer.dispatch import Dispatcher
from embedq.producer.inputs import check_dim, check_texts, positive
from embedq.producer.jobs import Embeddings, Job, RequestSpec
from embedq.producer.outstanding import Outstanding
from embedq.producer.read_through import ReadThrough
from embedq.producer.replies import POLL_S, ReplyListener, probe
from embedq.producer.streaming import check_stream, stream_jobs
from embedq.tasks.cache_guard import CacheGuard, cache_client
from embedq.tasks.connections import redis_client, safe_url
from embedq.tasks.liveness import live_consumers
from embedq.tasks.names import reply_key, route_queue
from embedq.tasks.queue_stats import QueueStats, queue_stats

_CLIENT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """A use case's route and how its queue is doing right now."""

    use_case: str
    model: str
    precision: str
    queue: QueueStats


class EmbedJob:
    """A submitted request: its texts are on their way; `get` waits for them in input order."""

    def __init__(self, client: EmbeddingClient, job: Job) -> None:
        self._client = client
        self.job = job

    @property
    def size(self) -> int:
        """How many texts were submitted (repeats included)."""
        return self.job.size

    def ready(self) -> bool:
        """True once every text is answered (or the request failed)."""
        return self.job.done()

    @property
    def messages(self) -> int:
        """How many messages carried this request's texts (0: the cache answered them all);
        final once the request is done. Coalesced messages carry other callers' texts too."""
        return self.job.messages

    def get(self, timeout: float | None = None) -> np.ndarray:
        """The ``(len(texts), dim)`` array; raises on failure or after ``timeout`` seconds."""
        return self.get_detailed(timeout).vectors

    def get_detailed(self, timeout: float | None = None, *,
                     raise_on_errors: bool = True) -> Embeddings:
        """The vectors with per-item metadata; item failures raise `EmbeddingFailedError`
        (or, with ``raise_on_errors=False``, are listed in ``errors`` with NaN rows)."""
        wait = self._client.timeout(timeout)
        try:
            self.job.future.result(wait)
        except FutureTimeout:
            raise self._client.timeout_error(self, wait) from None
        return self.job.result(raise_on_errors=raise_on_errors)


class _Connections:
    """What one process of a client holds: Redis clients and the two threads."""

    def __init__(self, client: EmbeddingClient) -> None:
        settings = client.settings
        self.pid = os.getpid()
        self.reply_key = reply_key(f"{os.getpid()}-{uuid.uuid4().hex}")
        self.broker = redis_client(settings.broker, master_name=settings.sentinel_master,
                                   socket_timeout=_CLIENT_TIMEOUT_S, socket_keepalive=True,
                                   socket_connect_timeout=_CLIENT_TIMEOUT_S)
        self.replies = redis_client(settings.broker, master_name=settings.sentinel_master,
                                    socket_timeout=POLL_S + _CLIENT_TIMEOUT_S,
                                    socket_keepalive=True, socket_connect_timeout=_CLIENT_TIMEOUT_S)
        self.liveness = CacheGuard(cache_client(settings, settings.broker),
                                   backoff_max_s=settings.cache_backoff_max_s)
        self.read_through = ReadThrough(settings) if client.read_through else None
        self.outstanding = Outstanding()
        self.dispatcher = Dispatcher(settings, self.broker, self.outstanding, self.reply_key,
                                     client.serving, self.read_through)
        self.listener = ReplyListener(
            settings, self.replies, self.reply_key, self.outstanding, self.dispatcher.resend,
            lambda job, rows: self.dispatcher.submit(job, rows, alone=True))

    def close(self) -> None:
        self.dispatcher.close()
        self.listener.close()
        closed = EmbedqError("the embedq client was closed before the reply arrived")
        for message in self.outstanding.drain():
            for job, _, _ in message.parts:
                job.fail(closed)
        for resource in (self.broker, self.replies, self.liveness, self.read_through):
            if resource is not None:
                resource.close()


class EmbeddingClient:
    """Embeds texts through the workers of the route a use case names.

    With no arguments, settings come from ``EMBEDQ_*`` variables and the registry from the
    packaged (or ``EMBEDQ_CONFIG_DIR``) JSON files. Use one client per process; close it (or use
    it as a context manager, sync or async) to stop its threads.
    """

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None, *,
                 read_through: bool | None = None) -> None:
        self.settings = settings or load_settings()
        self.registry = registry or load_registry(self.settings.config_dir)
        if read_through is None:
            read_through = self.settings.cache_enabled and self.settings.cache_read_through
        self.read_through = read_through
        self._connections: _Connections | None = None
        self._lock = threading.Lock()
        self._closed = False
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(reference))

    # -- plumbing -------------------------------------------------------------------------

    def _connected(self) -> _Connections:
        connections = self._connections
        if connections is not None and connections.pid == os.getpid():
            return connections
        with self._lock:
            if self._closed:
                raise EmbedqError("this embedq client is closed; create a new one")
            if self._connections is None or self._connections.pid != os.getpid():
                self._connections = _Connections(self)
            return self._connections

    def close(self) -> None:
        """Stop the client's threads and close its connections; waiting calls fail."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, None
        if connections is not None and connections.pid == os.getpid():
            connections.close()

    def __enter__(self) -> EmbeddingClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> EmbeddingClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.close)

    def timeout(self, timeout: object) -> float:
        """A caller's timeout, checked (None: ``EMBEDQ_TIMEOUT_S``)."""
        if timeout is None:
            return self.settings.timeout_s
        return positive("timeout", timeout, allow_float=True)

    # -- routing --------------------------------------------------------------------------

    def live_workers(self, queues: list[str]) -> list[int]:
        """Live consumers per queue, in one round trip to the broker (zeros if it fails)."""
        guard = self._connected().liveness
        counts = guard.run(lambda client: live_consumers(client, queues), None)
        return counts or [0] * len(queues)

    def serving(self, route: RouteSpec) -> RouteSpec:
        """The route as served by the first model of its chain whose queue has a live worker.

        Only routes with a fallback chain ask (one round trip); with no live worker anywhere the
        first model is used, so a timeout names the worker to start. The served model is in
        every cache key and every result, so vectors of different models never mix.
        """
        if not route.fallback:
            return route
        counts = self.live_workers([route_queue(route.served_by(m)) for m in route.chain])
        live = [model for model, count in zip(route.chain, counts, strict=True) if count]
        return route.served_by(live[0] if live else route.model)

    def route_status(self, use_case: str | None = None) -> RouteStatus:
        """The route of a use case and its queue's depth, oldest age, consumers, dead letters."""
        route = self.serving(self.registry.route(use_case))
        try:
            (stats,) = queue_stats(self._connected().broker, [route_queue(route)])
        except (redis.RedisError, OSError) as exc:
            raise self._broker_down(exc) from exc
        return RouteStatus(route.name, route.model, route.precision.value, stats)

    # -- embedding ------------------------------------------------------------------------

    def submit(self, texts: Sequence[str], use_case: str | None = None, *,
               dim: int | None = None, prompt_name: str | None = None,
               prompt: str | None = None) -> EmbedJob:
        """Validate and hand to the dispatcher; returns at once with a job handle.

        ``prompt_name`` picks one of the prompts the route offers, ``prompt`` sends prompt text
        where the route allows it; with neither, the route's own prompt (`embedq.config.prompts`).
        """
        items = check_texts(texts, self.settings.max_text_chars)
        route = self.registry.route(use_case)
        chosen = resolve_prompt(route, self.registry.model(route.model), prompt_name=prompt_name,
                                prompt=prompt)
        spec = RequestSpec(route, check_dim(self.registry, route, dim), chosen)
        index = {text: row for row, text in enumerate(dict.fromkeys(items))}
        job = Job(spec, list(index), [index[text] for text in items])
        self._connected().dispatcher.submit(job, list(range(len(index))))
        return EmbedJob(self, job)

    def embed(self, texts: Sequence[str], use_case: str | None = None, *,
              timeout: float | None = None, dim: int | None = None,
              prompt_name: str | None = None, prompt: str | None = None) -> np.ndarray:
        """Embed and wait: a ``(len(texts), dim)`` array in input order."""
        return self.submit(texts, use_case, dim=dim, prompt_name=prompt_name,
                           prompt=prompt).get(timeout)

    def embed_detailed(self, texts: Sequence[str], use_case: str | None = None, *,
                       timeout: float | None = None, dim: int | None = None,
                       prompt_name: str | None = None, prompt: str | None = None
                       ) -> Embeddings:
        """Like `embed`, with per-item model, revision, precision, cached, truncated, tokens
        (and the prompt used)."""
        return self.submit(texts, use_case, dim=dim, prompt_name=prompt_name,
                           prompt=prompt).get_detailed(timeout)

    async def aembed(self, texts: Sequence[str], use_case: str | None = None, *,
                     timeout: float | None = None, dim: int | None = None,
                     prompt_name: str | None = None, prompt: str | None = None) -> np.ndarray:
        """`embed` for an event loop: never blocks it."""
        return (await self.aembed_detailed(texts, use_case, timeout=timeout, dim=dim,
                                           prompt_name=prompt_name, prompt=prompt)).vectors

    async def aembed_detailed(self, texts: Sequence[str], use_case: str | None = None, *,
                              timeout: float | None = None, dim: int | None = None,
                              prompt_name: str | None = None, prompt: str | None = None
                              ) -> Embeddings:
        """`embed_detailed` for an event loop: never blocks it."""
        submitted = self.submit(texts, use_case, dim=dim, prompt_name=prompt_name,
                                prompt=prompt)
        wait = self.timeout(timeout)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(submitted.job.future)),
                                   wait)
        except TimeoutError:
            raise await asyncio.to_thread(self.timeout_error, submitted, wait) from None
        return submitted.job.result(raise_on_errors=True)

    def embed_many(self, texts: Iterable[str], use_case: str | None = None, *,
                   chunk_size: int | None = None, max_in_flight: int | None = None,
                   timeout: float | None = None, progress: bool | None = None,
                   dim: int | None = None, prompt_name: str | None = None,
                   prompt: str | None = None) -> Iterator[np.ndarray]:
        """Stream blocks of vectors for any iterable of texts, in input order.

        At most ``max_in_flight`` chunks wait at a time (default ``EMBEDQ_MAX_IN_FLIGHT`` per
        live consumer of the route's queue), so a bulk job keeps the workers busy without
        flooding Redis. Item failures raise `EmbeddingFailedError` naming the stream position.
        """
        blocks = self.embed_many_detailed(texts, use_case, chunk_size=chunk_size,
                                          max_in_flight=max_in_flight, timeout=timeout,
                                          progress=progress, dim=dim, raise_on_errors=True,
                                          prompt_name=prompt_name, prompt=prompt)
        return (block.vectors for block in blocks)

    def embed_many_detailed(self, texts: Iterable[str], use_case: str | None = None, *,
                            chunk_size: int | None = None, max_in_flight: int | None = None,
                            timeout: float | None = None, progress: bool | None = None,
                            dim: int | None = None, raise_on_errors: bool = False,
                            prompt_name: str | None = None, prompt: str | None = None
                            ) -> Iterator[Embeddings]:
        """`embed_many` with per-item metadata; item failures are listed in each block's
        ``errors`` (NaN rows) instead of raised, so a corpus job can log them and go on."""
        source = check_stream(texts)
        if isinstance(source, Sequence) and not source:
            raise InvalidInputError("texts is empty; pass at least one text")
        size = positive("chunk_size", chunk_size) if chunk_size is not None else (
            self.settings.chunk_size)
        window = positive("max_in_flight", max_in_flight) if max_in_flight is not None else (
            None)
        wait = self.timeout(timeout)
        if window is None:
            queue = route_queue(self.serving(self.registry.route(use_case)))
            window = self.settings.max_in_flight * max(1, *self.live_workers([queue]))
        return stream_jobs(self, source, use_case, size=size, window=window, wait=wait,
                           progress=progress, dim=dim, raise_on_errors=raise_on_errors,
                           prompt_name=prompt_name, prompt=prompt)

    # -- diagnosis ------------------------------------------------------------------------

    def _broker_down(self, exc: BaseException) -> BrokerUnavailableError:
        return BrokerUnavailableError(
            f"the broker at {safe_url(self.settings.broker)} cannot be reached ({exc!r}); "
            "requests already sent are kept and answered once it is back")

    def timeout_error(self, submitted: EmbedJob, waited: float) -> EmbedqError:
        """Why a job is not done after ``waited`` seconds: broker down, no live worker, or a
        live but busy one (the request stays queued in every case)."""
        connections = self._connected()
        down = connections.dispatcher.broker_error or connections.listener.broker_error
        if down is not None:
            return self._broker_down(down)
        route = submitted.job.spec.route
        messages = connections.outstanding.of_job(submitted.job)
        queue = messages[0].queue if messages else route_queue(route)
        try:
            consumers = live_consumers(connections.broker, [queue])[0]
            where = probe(connections.broker, messages[0]) if messages else "answered"
        except (redis.RedisError, OSError) as exc:
            return self._broker_down(exc)
        served = self.serving(route)
        if consumers == 0:
            return NoLiveWorkerError(
                f"no reply within {waited:g}s for use case {route.name!r}: no live worker "
                f"consumes {queue}; start one: embedq worker --model {served.model} "
                f"--precision {served.precision.value} (the request stays queued)")
        return EmbedTimeoutError(
            f"no reply within {waited:g}s for use case {route.name!r}: the message is {where} "
            f"on {queue}, which {consumers} live consumer(s) serve; they are busy or slow "
            "(the request may still be answered; embedq route status shows the backlog)")


def _forget_after_fork(reference: weakref.ref[EmbeddingClient]) -> None:
    """In a forked child the parent's threads do not exist: start afresh on first use."""
    client = reference()
    if client is not None:
        client._connections = None
        client._lock = threading.Lock()
