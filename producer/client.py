"""`EmbeddingClient`: validate texts, resolve the route, enqueue chunks, gather numpy arrays.

The producer knows use cases, not models: the route table decides model, precision, dimension
and queue, so a web app can never make a worker load a path or a class. Texts are checked here,
before anything is enqueued, with the same rules the worker applies.

Repeated texts in one request are sent once. With read-through on (the default), texts whose
vectors are in the shared Redis cache are answered from it with one MGET and never enqueued;
only the misses go to the queue, and `EmbedJob` merges both back in input order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from embedq.config.errors import (
    EmbeddingFailedError,
    EmbedTimeoutError,
    InvalidInputError,
    InvalidTextError,
)
from embedq.config.registry import Registry, RouteSpec, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.producer.progress import progress_bar
from embedq.producer.read_through import ReadThrough
from embedq.tasks.app import create_app
from embedq.tasks.cache_codec import CachedVector, place_cached
from embedq.tasks.cache_guard import CacheGuard, cache_client
from embedq.tasks.codec import empty_vectors
from embedq.tasks.liveness import live_consumers
from embedq.tasks.names import EMBED_TASK, route_queue
from embedq.tasks.schema import EmbedRequest, EmbedResult
from embedq.tasks.validation import text_problem


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Vectors plus, per item, how each was made."""

    vectors: np.ndarray
    model: list[str]
    revision: list[str]
    precision: list[str]
    cached: list[bool]
    truncated: list[bool]
    tokens: list[int]


@dataclass(frozen=True, slots=True)
class Merge:
    """Where each input's vector comes from: its distinct text, a cache hit or a queued chunk."""

    texts: list[str]  # the distinct texts, in first-seen order
    positions: list[int]  # input position -> index into texts
    hits: dict[int, CachedVector]  # index into texts -> cached entry
    revision: str  # the model revision of the hits
    precision: str  # the weight precision of the hits (what "auto" resolved to)
    chunks: list[list[int]]  # indices into texts of each enqueued chunk, in order
    dim: int


class EmbedJob:
    """A submitted request: its chunks are on the queue; `get` gathers them in input order."""

    def __init__(
        self, client: EmbeddingClient, route: RouteSpec, parts: list[AsyncResult], merge: Merge
    ) -> None:
        self._client = client
        self.route = route
        self._parts = parts
        self._merge = merge
        self.size = len(merge.positions)
        self._results: list[EmbedResult] | None = None  # results are read from Redis once
        self._failure: BaseException | None = None  # a chunk's error, kept to raise again

    @property
    def ids(self) -> list[str]:
        """Celery task ids of the chunks (what Flower and the worker logs show)."""
        return [part.id for part in self._parts]

    def ready(self) -> bool:
        """True once every chunk has a result (or an error)."""
        return self._results is not None or all(
            part.backend is None or part.ready() for part in self._parts  # None: read already
        )

    def get(self, timeout: float | None = None) -> np.ndarray:
        """The vectors, one row per input text, in input order."""
        return self.get_detailed(timeout).vectors

    def get_detailed(self, timeout: float | None = None) -> Embeddings:
        """The vectors with per-item metadata; raises `EmbeddingFailedError` on bad items."""
        if self._failure is not None:
            raise self._failure
        if self._results is None:
            limit = self._client.settings.timeout_s if timeout is None else timeout
            deadline = time.monotonic() + limit
            try:
                self._results = [self._collect(part, deadline) for part in self._parts]
            except EmbedTimeoutError:
                raise  # nothing was read for good: a later get() may still succeed
            except Exception as exc:
                self._failure = exc
                raise
        merge, route = self._merge, self.route
        count = len(merge.texts)
        vectors = empty_vectors(count, merge.dim, route.output_dtype.value)
        tokens, truncated = [0] * count, [False] * count
        place_cached(vectors, merge.hits, normalize=route.normalize, tokens=tokens,
                     truncated=truncated)
        facts: dict[str, list[Any]] = {
            "model": [route.model] * count, "revision": [merge.revision] * count,
            "precision": [merge.precision] * count, "cached": [True] * count,
            "truncated": truncated, "tokens": tokens,
        }
        errors = self._place(vectors, facts)
        order = merge.positions
        if any(index in errors for index in order):
            failed = {p: errors[index] for p, index in enumerate(order) if index in errors}
            raise EmbeddingFailedError(failed, vectors[order])
        per_input = {name: [values[index] for index in order] for name, values in facts.items()}
        return Embeddings(vectors=vectors[order], **per_input)

    def _place(self, vectors: np.ndarray, facts: dict[str, list[Any]]) -> dict[int, str]:
        """Put each chunk's vectors and facts at their texts' rows; the errors by text index."""
        errors: dict[int, str] = {}
        for result, chunk in zip(self._results or [], self._merge.chunks, strict=True):
            vectors[chunk] = result.vectors
            for row, index in enumerate(chunk):
                for name, value in (
                    ("model", result.model), ("revision", result.revision),
                    ("precision", result.precision), ("cached", result.cached[row]),
                    ("truncated", result.truncated[row]), ("tokens", result.tokens[row]),
                ):
                    facts[name][index] = value
            errors.update({chunk[row]: message for row, message in result.errors})
        return errors

    def _collect(self, part: AsyncResult, deadline: float) -> EmbedResult:
        remaining = max(0.001, deadline - time.monotonic())
        try:
            payload = part.get(timeout=remaining, propagate=True)
        except CeleryTimeoutError:
            queue = route_queue(self.route)
            raise EmbedTimeoutError(
                f"no result for task {part.id} (use case {self.route.name!r}, queue {queue}) "
                f"in time; is a worker consuming {queue}? Start one with: embedq worker "
                f"--model {self.route.model} --precision {self.route.precision.value}"
            ) from None
        finally:
            if part.ready():
                release_result(part)
        return EmbedResult.from_wire(payload)


def release_result(part: AsyncResult) -> None:
    """Forget a result that has been read, and drop its subscription now.

    Results are read once, so Redis must not keep them. Celery's AsyncResult also unsubscribes
    again in ``__del__``, whenever the garbage collector gets to it; if Redis is unreachable at
    that moment, the collecting thread blocks in Celery's reconnect loop. Unsubscribing here,
    while the connection is known to be good, and detaching the backend makes ``__del__`` a no-op.
    """
    part.forget()
    part.backend.remove_pending_result(part)
    part.backend = None


def _check_texts(texts: object, max_chars: int) -> list[str]:
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise InvalidInputError(
            f"texts must be a list of strings, got a {type(texts).__name__}; "
            "wrap a single text as [text]"
        )
    if not texts:
        raise InvalidInputError("texts is empty; pass at least one text")
    problems = {i: p for i, text in enumerate(texts) if (p := text_problem(text, max_chars))}
    if problems:
        index, problem = next(iter(problems.items()))
        error = InvalidTextError(index, problem)
        error.problems = problems  # type: ignore[attr-defined]  # every bad item, not just one
        raise error
    return list(texts)


class EmbeddingClient:
    """Embeds texts through the workers of the route a use case names.

    With no arguments, settings come from ``EMBEDQ_*`` variables and the registry from the
    packaged (or ``EMBEDQ_CONFIG_DIR``) JSON files.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        registry: Registry | None = None,
        app: Celery | None = None,
        *,
        read_through: bool | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.registry = registry or load_registry(self.settings.config_dir)
        self.app = app or create_app(self.settings)
        if read_through is None:
            read_through = self.settings.cache_enabled and self.settings.cache_read_through
        self.read_through = ReadThrough(self.settings) if read_through else None
        self._liveness: CacheGuard | None = None  # opened when a route has a fallback chain

    def serving(self, route: RouteSpec) -> RouteSpec:
        """The route as served by the first model of its chain whose queue has a live worker.

        One pipelined round trip to the broker Redis, and only for routes with a fallback. With
        no live worker anywhere (or that Redis unreachable) the first model is used, so a timeout
        names the worker to start. The served model is in every cache key and every result, so
        vectors of different models never mix.
        """
        if not route.fallback:
            return route
        counts = self._live_workers([route_queue(route.served_by(m)) for m in route.chain])
        live = [model for model, count in zip(route.chain, counts, strict=True) if count]
        return route.served_by(live[0] if live else route.model)

    def _live_workers(self, queues: list[str]) -> list[int]:
        """Live workers per queue, in one round trip to the broker Redis (zeros if it fails)."""
        if self._liveness is None:
            self._liveness = CacheGuard(cache_client(self.settings, self.settings.broker),
                                        backoff_max_s=self.settings.cache_backoff_max_s)
        counts = self._liveness.run(lambda client: live_consumers(client, queues), None)
        return counts or [0] * len(queues)

    def _request(self, route: RouteSpec, texts: list[str]) -> EmbedRequest:
        return EmbedRequest(
            texts=texts,
            route=route.name,
            model=route.model,
            precision=route.precision.value,
            dim=self.registry.output_dim(route),
            normalize=route.normalize,
            output_dtype=route.output_dtype.value,
        )

    def submit(
        self, texts: Sequence[str], use_case: str | None = None, *, chunk_size: int | None = None
    ) -> EmbedJob:
        """Validate, split into chunks and enqueue; returns at once with a job handle."""
        items = _check_texts(texts, self.settings.max_text_chars)
        route = self.serving(self.registry.route(use_case))
        size = chunk_size or self.settings.chunk_size
        if size < 1:
            raise InvalidInputError(f"chunk_size must be at least 1, got {size}")
        index = {text: i for i, text in enumerate(dict.fromkeys(items))}
        texts = list(index)
        request = self._request(route, texts)
        info, found = (None, []) if self.read_through is None else self.read_through.lookup(request)
        hits = {i: entry for i, entry in enumerate(found) if entry is not None}
        misses = [i for i in range(len(texts)) if i not in hits]
        chunks = [misses[start : start + size] for start in range(0, len(misses), size)]
        parts = [
            self.app.send_task(
                EMBED_TASK,
                args=[self._request(route, [texts[i] for i in chunk]).to_wire()],
                queue=route_queue(route),
            )
            for chunk in chunks
        ]
        merge = Merge(texts, [index[text] for text in items], hits,
                      info.revision if info else "",
                      info.precision if info else route.precision.value, chunks, request.dim)
        return EmbedJob(self, route, parts, merge)

    def embed(
        self, texts: Sequence[str], use_case: str | None = None, *, timeout: float | None = None
    ) -> np.ndarray:
        """Embed and wait: a ``(len(texts), dim)`` array in input order."""
        return self.submit(texts, use_case).get(timeout)

    def embed_detailed(
        self, texts: Sequence[str], use_case: str | None = None, *, timeout: float | None = None
    ) -> Embeddings:
        """Like `embed`, with per-item model, revision, precision, cached and truncated flags."""
        return self.submit(texts, use_case).get_detailed(timeout)

    def embed_many(
        self,
        texts: Iterable[str],
        use_case: str | None = None,
        *,
        chunk_size: int | None = None,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        progress: bool | None = None,
    ) -> Iterator[np.ndarray]:
        """Stream blocks of vectors for any iterable of texts, in input order.

        At most ``max_in_flight`` chunks wait on the queue at a time, so a bulk job keeps the
        workers busy without flooding Redis; by default that is ``EMBEDQ_MAX_IN_FLIGHT`` for
        each live worker on the route's queue, so the window grows with the pool that serves
        it. Yields one array per chunk (concatenate them for one matrix). A progress bar shows
        on a terminal (``progress=None``) or when asked.
        """
        size = chunk_size or self.settings.chunk_size
        window = max_in_flight or self.settings.max_in_flight * max(
            1, *self._live_workers([route_queue(self.serving(self.registry.route(use_case)))]))
        total = len(texts) if isinstance(texts, Sequence) else None
        source = iter(texts)
        pending: deque[EmbedJob] = deque()
        submitted = 0
        with progress_bar(total=total, enabled=progress, unit="text") as bar:
            while True:
                while len(pending) < window and (chunk := list(islice(source, size))):
                    try:
                        pending.append(self.submit(chunk, use_case, chunk_size=size))
                    except InvalidTextError as exc:  # name the position in the whole stream
                        raise InvalidTextError(submitted + exc.index, exc.problem) from exc
                    submitted += len(chunk)
                if not pending:
                    return
                job = pending.popleft()
                vectors = job.get(timeout)
                bar.update(job.size)
                yield vectors
