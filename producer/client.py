"""`EmbeddingClient`: validate texts, resolve the route, enqueue chunks, gather numpy arrays.

The producer knows use cases, not models: the route table decides model, precision, dimension
and queue, so a web app can never make a worker load a path or a class. Texts are checked here,
before anything is enqueued, with the same rules the worker applies.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

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
from embedq.tasks.app import create_app
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


class EmbedJob:
    """A submitted request: its chunks are on the queue; `get` gathers them in input order."""

    def __init__(
        self, client: EmbeddingClient, route: RouteSpec, parts: list[AsyncResult], size: int
    ) -> None:
        self._client = client
        self.route = route
        self._parts = parts
        self.size = size
        self._results: list[EmbedResult] | None = None  # results are read from Redis once

    @property
    def ids(self) -> list[str]:
        """Celery task ids of the chunks (what Flower and the worker logs show)."""
        return [part.id for part in self._parts]

    def ready(self) -> bool:
        """True once every chunk has a result (or an error)."""
        return self._results is not None or all(part.ready() for part in self._parts)

    def get(self, timeout: float | None = None) -> np.ndarray:
        """The vectors, one row per input text, in input order."""
        return self.get_detailed(timeout).vectors

    def get_detailed(self, timeout: float | None = None) -> Embeddings:
        """The vectors with per-item metadata; raises `EmbeddingFailedError` on bad items."""
        if self._results is None:
            limit = self._client.settings.timeout_s if timeout is None else timeout
            deadline = time.monotonic() + limit
            self._results = [self._collect(part, deadline) for part in self._parts]
        results = self._results
        vectors = np.concatenate([r.vectors for r in results]) if results else np.empty((0, 0))
        errors: dict[int, str] = {}
        offset = 0
        for result in results:
            errors.update({offset + index: message for index, message in result.errors})
            offset += len(result.cached)
        if errors:
            raise EmbeddingFailedError(errors, vectors)
        per_item = [(r, n) for r in results for n in range(len(r.cached))]
        return Embeddings(
            vectors=vectors,
            model=[r.model for r, _ in per_item],
            revision=[r.revision for r, _ in per_item],
            precision=[r.precision for r, _ in per_item],
            cached=[c for r in results for c in r.cached],
            truncated=[t for r in results for t in r.truncated],
            tokens=[t for r in results for t in r.tokens],
        )

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
                part.forget()  # results are read once; Redis must not grow with traffic
        return EmbedResult.from_wire(payload)


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
    ) -> None:
        self.settings = settings or load_settings()
        self.registry = registry or load_registry(self.settings.config_dir)
        self.app = app or create_app(self.settings)

    def submit(
        self, texts: Sequence[str], use_case: str | None = None, *, chunk_size: int | None = None
    ) -> EmbedJob:
        """Validate, split into chunks and enqueue; returns at once with a job handle."""
        route = self.registry.route(use_case)
        items = _check_texts(texts, self.settings.max_text_chars)
        size = chunk_size or self.settings.chunk_size
        if size < 1:
            raise InvalidInputError(f"chunk_size must be at least 1, got {size}")
        dim = self.registry.output_dim(route)
        parts = [
            self.app.send_task(
                EMBED_TASK,
                args=[
                    EmbedRequest(
                        texts=items[start : start + size],
                        route=route.name,
                        model=route.model,
                        precision=route.precision.value,
                        dim=dim,
                        normalize=route.normalize,
                        output_dtype=route.output_dtype.value,
                    ).to_wire()
                ],
                queue=route_queue(route),
            )
            for start in range(0, len(items), size)
        ]
        return EmbedJob(self, route, parts, len(items))

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
        workers busy without flooding Redis. Yields one array per chunk (concatenate them for
        one matrix). A progress bar shows on a terminal (``progress=None``) or when asked.
        """
        size = chunk_size or self.settings.chunk_size
        window = max_in_flight or self.settings.max_in_flight
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
