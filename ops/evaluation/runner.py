"""Running an evaluation through the workers, the way users get their vectors.

Texts go through `EmbeddingClient.embed_many`, so the figure includes the route's precision,
output dtype, truncation and cache, and texts/s (embedding time only, scoring excluded) is what
a bulk producer sees. A route without a live worker fails at once with `NoLiveWorkerError`
instead of waiting out a timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from embedq.config.errors import NoLiveWorkerError
from embedq.ops.evaluation.evaluators import Evaluator
from embedq.ops.evaluation.metrics import as_float
from embedq.producer import EmbeddingClient


@dataclass(frozen=True)
class EvalResult:
    """One task on one route; ``name`` carries the precision so fp32 and int8 sit side by side."""

    task: str
    route: str
    model: str
    precision: str
    metrics: dict[str, float]
    primary: str
    texts: int
    seconds: float
    data: str
    worker_memory_bytes: int | None = None
    time: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        """``task:route(model@precision)``."""
        return f"{self.task}:{self.route}({self.model}@{self.precision})"

    @property
    def texts_per_s(self) -> float:
        """Embedding throughput through the queue (time spent scoring left out)."""
        return self.texts / self.seconds if self.seconds else 0.0


def require_live_worker(client: EmbeddingClient, route: str) -> None:
    """Fail now, naming the queue and the fix, when no worker consumes the route's queue."""
    status = client.route_status(route)
    if status.queue.consumers == 0:
        raise NoLiveWorkerError(
            f"route {route!r}: no live worker consumes {status.queue.queue}; start one with "
            f"`embedq worker -m {status.model} -p {status.precision}` or `embedq up`")


def evaluate_route(client: EmbeddingClient, evaluator: Evaluator, route: str, *,
                   data: str) -> EvalResult:
    """Run ``evaluator`` with every text embedded by ``route``'s workers."""
    require_live_worker(client, route)
    dim = client.registry.output_dim(client.registry.route(route))
    spent = [0.0]

    def embed(texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        blocks = list(client.embed_many(texts, route, progress=False))
        spent[0] += time.perf_counter() - started
        return as_float(np.concatenate(blocks), dim)

    figures = evaluator(embed)
    status = client.route_status(route)
    return EvalResult(task=evaluator.task, route=route, model=status.model,
                      precision=status.precision, metrics=figures, primary=evaluator.primary,
                      texts=evaluator.size(), seconds=spent[0], data=data)
