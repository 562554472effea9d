"""A submitted request as its caller sees it: rows that fill in as replies arrive.

One `Job` per ``submit``/``embed`` call. Its distinct texts may be answered by the cache,
by one message, or by several messages shared with other callers (the dispatcher coalesces);
each delivery fills the job's own rows, and the job completes when every row has a vector or an
error. Failures stay with the job they belong to: another caller's bad item, timeout or failed
message never touches it. Completion is a `concurrent.futures.Future`, so a thread waits on it
and an event loop awaits it (`embedq.producer.loop_wakeups`) without blocking.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from embedq.config.errors import EmbeddingFailedError, EmbedqError, EmbedTimeoutError
from embedq.config.prompts import NO_PROMPT, Prompt
from embedq.config.registry import RouteSpec
from embedq.tasks.cache_codec import CachedVector, place_cached
from embedq.tasks.codec import empty_vectors
from embedq.tasks.schema import EmbedResult
from embedq.tasks.wire import DROPPED_ROW


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Vectors plus, per item, how each was made; ``errors`` maps failed positions to why."""

    vectors: np.ndarray
    model: list[str]
    revision: list[str]
    precision: list[str]
    cached: list[bool]
    truncated: list[bool]
    tokens: list[int]
    errors: dict[int, str] = field(default_factory=dict)
    prompt: str = ""  # the prompt text every item was embedded with ("" for none)
    prompt_name: str | None = None  # the model's name for it, when it came from one


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """Everything that decides which queue and which vectors: requests of one spec coalesce.
    Bulk work (``embed_many``, corpus jobs) travels apart, behind interactive work."""

    route: RouteSpec
    dim: int
    bulk: bool = False
    prompt: Prompt = NO_PROMPT


class Job:
    """The distinct texts of one call, their rows, and the future that completes with them."""

    def __init__(self, spec: RequestSpec, texts: list[str], positions: list[int], *,
                 deadline: float) -> None:
        self.spec = spec
        self.deadline = deadline  # wall clock: it travels to workers on other hosts
        self.texts = texts  # distinct, first-seen order
        self.positions = positions  # input position -> row
        count = len(texts)
        self.vectors = empty_vectors(count, spec.dim, spec.route.output_dtype.value)
        self.model = [spec.route.model] * count
        self.revision = [""] * count
        self.precision = [spec.route.precision.value] * count
        self.cached = [False] * count
        self.truncated = [False] * count
        self.tokens = [0] * count
        self.errors: dict[int, str] = {}
        self.task_ids: list[str] = []  # the messages that carried rows of it (none: the cache)
        # Completes with None, not with the job: a future holding its own job would make every
        # request a reference cycle, left to the cyclic garbage collector, whose full passes
        # stall a busy producer's event loop for hundreds of milliseconds.
        self.future: Future[None] = Future()
        self._missing = count
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """How many texts the caller passed (repeats included)."""
        return len(self.positions)

    @property
    def messages(self) -> int:
        """How many messages carried rows of this job (0: the cache answered them all)."""
        return len(self.task_ids)

    def done(self) -> bool:
        """True once every row is answered, or the job failed as a whole."""
        return self.future.done()

    def fill_cached(self, hits: Mapping[int, CachedVector], model: str, revision: str,
                    precision: str) -> None:
        """Rows answered by the cache (row -> entry), made by ``model`` at ``precision``."""
        if not hits:
            return
        with self._lock:
            place_cached(self.vectors, hits, normalize=self.spec.route.normalize,
                         tokens=self.tokens, truncated=self.truncated)
            for row in hits:
                self.cached[row], self.model[row] = True, model
                self.revision[row], self.precision[row] = revision, precision
            self._answered(len(hits))

    def fill(self, rows: list[int], result: EmbedResult, result_rows: list[int]) -> None:
        """Rows answered by one message's result (``result_rows`` index the result). A row the
        worker dropped because the deadline had passed fails the job as the timeout it is."""
        errors = dict(result.errors)
        dropped = sum(errors.get(at) == DROPPED_ROW for at in result_rows)
        if dropped:
            self.fail(EmbedTimeoutError(f"the deadline of this request passed before a worker "
                                        f"could compute {dropped} of its texts"))
            return
        with self._lock:
            self.vectors[rows] = result.vectors[result_rows]
            for row, at in zip(rows, result_rows, strict=True):
                self.model[row], self.revision[row] = result.model, result.revision
                self.precision[row], self.cached[row] = result.precision, result.cached[at]
                self.truncated[row], self.tokens[row] = result.truncated[at], result.tokens[at]
                if at in errors:
                    self.errors[row] = errors[at]
            self._answered(len(rows))

    def cancel(self) -> bool:
        """Give up on the job (its caller left); False if it was already done."""
        with self._lock:
            return self.future.cancel()

    @property
    def cancelled(self) -> bool:
        """True once its caller cancelled it."""
        return self.future.cancelled()

    def fail(self, error: EmbedqError) -> None:
        """The whole job fails with ``error`` (a message of it was refused or dead-lettered)."""
        with self._lock:
            if not self.future.done():
                self.future.set_exception(error)

    def _answered(self, rows: int) -> None:
        self._missing -= rows
        if self._missing <= 0 and not self.future.done():
            self.future.set_result(None)

    def result(self, *, raise_on_errors: bool) -> Embeddings:
        """The caller's view, in input order (call once the future is done)."""
        order = self.positions
        errors = {p: self.errors[row] for p, row in enumerate(order) if row in self.errors}
        if errors and raise_on_errors:
            raise EmbeddingFailedError(errors, self.vectors[order])
        return Embeddings(
            vectors=self.vectors[order],
            model=[self.model[row] for row in order],
            revision=[self.revision[row] for row in order],
            precision=[self.precision[row] for row in order],
            cached=[self.cached[row] for row in order],
            truncated=[self.truncated[row] for row in order],
            tokens=[self.tokens[row] for row in order],
            errors=errors,
            prompt=self.spec.prompt.text,
            prompt_name=self.spec.prompt.name,
        )
