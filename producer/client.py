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
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import redis

from embedq.config.errors import EmbedqError, InvalidInputError
from embedq.config.registry import Registry, RouteSpec, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.producer.admission import admit, request_spec
from embedq.producer.connections import Connections
from embedq.producer.diagnosis import broker_down, why_not_done
from embedq.producer.handle import EmbedJob
from embedq.producer.inputs import check_texts, positive
from embedq.producer.jobs import Embeddings, Job
from embedq.producer.loop_wakeups import until_done
from embedq.producer.streaming import check_stream, stream_jobs
from embedq.tasks.brokers import queue_settings, route_settings
from embedq.tasks.liveness import live_consumers
from embedq.tasks.names import route_queue
from embedq.tasks.queue_stats import QueueStats, queue_stats


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """A use case's route and how its queue is doing right now."""

    use_case: str
    model: str
    precision: str
    queue: QueueStats


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
        queue_settings(self.registry, self.settings)  # a route's missing ${VAR}: here, not later
        if read_through is None:
            read_through = self.settings.cache_enabled and self.settings.cache_read_through
        self.read_through = read_through
        self._connections: Connections | None = None
        self._lock = threading.Lock()
        self._closed = False
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(reference))

    # -- plumbing -------------------------------------------------------------------------

    def _connected(self) -> Connections:
        connections = self._connections
        if connections is not None and connections.pid == os.getpid():
            return connections
        with self._lock:
            if self._closed:
                raise EmbedqError("this embedq client is closed; create a new one")
            if self._connections is None or self._connections.pid != os.getpid():
                self._connections = Connections(self.settings, self.serving, self.read_through)
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

    def timeout(self, timeout: object, *, bulk: bool = False) -> float:
        """A caller's timeout, checked (None: ``EMBEDQ_TIMEOUT_S``, or for bulk work
        ``EMBEDQ_BULK_TIMEOUT_S``)."""
        if timeout is None:
            return self.settings.bulk_timeout_s if bulk else self.settings.timeout_s
        return positive("timeout", timeout, allow_float=True)

    def cancelled(self, job: Job) -> None:
        """Tell the workers that ``job``'s caller has left (its rows are skipped)."""
        connections = self._connections
        if connections is not None and connections.pid == os.getpid():
            connections.link(job.spec.route).dispatcher.cancel(job)

    # -- routing --------------------------------------------------------------------------

    def live_workers(self, queues: list[str], route: RouteSpec | None = None) -> list[int]:
        """Live consumers per queue of ``route`` (default: the default route), in one round
        trip to its broker (zeros if it fails)."""
        guard = self._connected().link(route or self.registry.route(None)).liveness
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
        counts = self.live_workers([route_queue(route.served_by(m)) for m in route.chain],
                                   route)
        live = [model for model, count in zip(route.chain, counts, strict=True) if count]
        return route.served_by(live[0] if live else route.model)

    def route_status(self, use_case: str | None = None) -> RouteStatus:
        """The route of a use case and its queue's depth, oldest age, consumers, dead letters."""
        route = self.serving(self.registry.route(use_case))
        try:
            (stats,) = queue_stats(self._connected().link(route).broker, [route_queue(route)])
        except (redis.RedisError, OSError) as exc:
            raise broker_down(route_settings(self.settings, route), exc) from exc
        return RouteStatus(route.name, route.model, route.precision.value, stats)

    # -- embedding ------------------------------------------------------------------------

    def submit(self, texts: Sequence[str], use_case: str | None = None, *,
               dim: int | None = None, timeout: float | None = None,
               bulk: bool = False, prompt_name: str | None = None,
               prompt: str | None = None) -> EmbedJob:
        """Validate and hand to the dispatcher; returns at once with a job handle.

        The request's deadline is ``timeout`` seconds from now (default ``EMBEDQ_TIMEOUT_S``;
        for ``bulk`` work ``EMBEDQ_BULK_TIMEOUT_S``): workers never compute it after that. An
        interactive request that the work already queued would keep past its deadline is
        refused at once with `OverloadedError`, nothing enqueued (routes with ``"shed":
        false`` and bulk work never are); bulk work waits behind interactive work.
        ``prompt_name``/``prompt`` choose the prompt (`embedq.producer.admission.request_spec`).
        """
        items = check_texts(texts, self.settings.max_text_chars)
        route = self.registry.route(use_case)
        spec = request_spec(self.registry, route, dim, bulk=bulk, prompt_name=prompt_name,
                            prompt=prompt)
        wait = self.timeout(timeout, bulk=bulk)
        link = self._connected().link(route)
        if route.shed and not bulk:
            admit(link.dispatcher, route.name, route_queue(self.serving(route)), wait,
                  self.settings.shed_headroom)
        index = {text: row for row, text in enumerate(dict.fromkeys(items))}
        job = Job(spec, list(index), [index[text] for text in items],
                  deadline=time.time() + wait)
        link.dispatcher.submit(job, list(range(len(index))))
        return EmbedJob(self, job)

    def embed(self, texts: Sequence[str], use_case: str | None = None, *,
              timeout: float | None = None, dim: int | None = None,
              prompt_name: str | None = None, prompt: str | None = None) -> np.ndarray:
        """Embed and wait: a ``(len(texts), dim)`` array in input order."""
        return self.submit(texts, use_case, dim=dim, timeout=timeout, prompt_name=prompt_name,
                           prompt=prompt).get()

    def embed_detailed(self, texts: Sequence[str], use_case: str | None = None, *,
                       timeout: float | None = None, dim: int | None = None,
                       prompt_name: str | None = None, prompt: str | None = None
                       ) -> Embeddings:
        """Like `embed`, with per-item model, revision, precision, cached, truncated, tokens
        (and the prompt used)."""
        return self.submit(texts, use_case, dim=dim, timeout=timeout, prompt_name=prompt_name,
                           prompt=prompt).get_detailed()

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
        """`embed_detailed` for an event loop: never blocks it. Cancelling the awaiting task
        (a client that disconnected, an aborted request) cancels the request's texts too."""
        return await self.awaited(self.submit(texts, use_case, dim=dim, timeout=timeout,
                                              prompt_name=prompt_name, prompt=prompt))

    async def awaited(self, submitted: EmbedJob) -> Embeddings:
        """Wait for a submitted request without blocking the event loop, until its deadline;
        cancelling the awaiting task cancels the request's texts."""
        wait = submitted.remaining()
        try:
            done = await until_done(submitted.job.future, wait)
        except asyncio.CancelledError:
            submitted.cancel()
            raise
        if not done:
            raise self.timeout_error(submitted, wait)
        if submitted.job.cancelled:  # `cancel` on the handle: as for a cancelled task
            raise asyncio.CancelledError
        failed = submitted.job.future.exception()  # done: never waits
        if failed is not None:
            raise failed
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
        wait = self.timeout(timeout, bulk=True)
        if window is None:
            route = self.registry.route(use_case)
            queue = route_queue(self.serving(route))
            window = self.settings.max_in_flight * max(1, *self.live_workers([queue], route))
        return stream_jobs(self, source, use_case, size=size, window=window, wait=wait,
                           progress=progress, dim=dim, raise_on_errors=raise_on_errors,
                           prompt_name=prompt_name, prompt=prompt)

    # -- diagnosis ------------------------------------------------------------------------

    def timeout_error(self, submitted: EmbedJob, waited: float) -> EmbedqError:
        """Why a job is not done after ``waited`` seconds (see `diagnosis.why_not_done`)."""
        job = submitted.job
        return why_not_done(self, self._connected().link(job.spec.route), job, waited)


def _forget_after_fork(reference: weakref.ref[EmbeddingClient]) -> None:
    """In a forked child the parent's threads do not exist: start afresh on first use."""
    client = reference()
    if client is not None:
        client._connections = None
        client._lock = threading.Lock()
