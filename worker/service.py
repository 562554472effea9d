"""Turns a flush of embed requests into one result (or one error) per request.

Requests that share a model and precision are embedded together: their texts are validated one
by one, deduplicated, and sent through the model in token-budget batches once; each request then
gets its own post-processing (dimension, normalisation, dtype). A bad item costs only itself
(its row is NaN and its error is listed); a bad request costs only itself.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import structlog

from embedq.config.errors import EmbedqError, PayloadError, UnknownModelError
from embedq.config.registry import OutputDtype, Precision, Registry
from embedq.config.settings import Settings
from embedq.tasks.schema import EmbedRequest, EmbedResult
from embedq.tasks.validation import text_problem
from embedq.worker.embedder import Embedder, Encoded, postprocess
from embedq.worker.pool import ModelPool

log = structlog.get_logger(__name__)

Outcome = EmbedResult | EmbedqError


class EmbedService:
    """The worker's request handling, free of Celery so it can be tested and reused."""

    def __init__(self, registry: Registry, settings: Settings, pool: ModelPool) -> None:
        self.registry = registry
        self.settings = settings
        self.pool = pool

    def check(self, request: EmbedRequest) -> Precision:
        """Refuse a request for anything the registry does not define."""
        try:
            spec = self.registry.model(request.model)
            precision = Precision(request.precision)
            OutputDtype(request.output_dtype)
        except (UnknownModelError, ValueError) as exc:
            raise PayloadError(f"request {request.id}: {exc}") from exc
        if not 0 < request.dim <= spec.dim:
            raise PayloadError(
                f"request {request.id}: dim {request.dim} is outside 1..{spec.dim} for {spec.name}"
            )
        return precision

    def handle(self, requests: list[EmbedRequest]) -> list[Outcome]:
        """One outcome per request, in order; never raises for a request's own problems."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        groups: dict[tuple[str, Precision], list[int]] = defaultdict(list)
        for position, request in enumerate(requests):
            try:
                groups[(request.model, self.check(request))].append(position)
            except EmbedqError as exc:
                outcomes[position] = exc
        for (model, precision), members in groups.items():
            try:
                embedder = self.pool.get(model, precision)
            except EmbedqError as exc:
                for position in members:
                    outcomes[position] = exc
                continue
            results = self._embed_group(embedder, [requests[p] for p in members])
            for position, result in zip(members, results, strict=True):
                outcomes[position] = result
        return [outcome for outcome in outcomes if outcome is not None]

    def _embed_group(self, embedder: Embedder, requests: list[EmbedRequest]) -> list[EmbedResult]:
        started = time.perf_counter()
        limit = self.settings.max_text_chars
        problems = [
            {i: p for i, text in enumerate(r.texts) if (p := text_problem(text, limit))}
            for r in requests
        ]
        unique: dict[str, int] = {}
        for request, bad in zip(requests, problems, strict=True):
            for i, text in enumerate(request.texts):
                if i not in bad:
                    unique.setdefault(text, len(unique))
        encoded = embedder.encode(list(unique))
        encode_ms = (time.perf_counter() - started) * 1e3
        return [
            self._result(embedder, request, bad, unique, encoded, encode_ms)
            for request, bad in zip(requests, problems, strict=True)
        ]

    def _result(
        self,
        embedder: Embedder,
        request: EmbedRequest,
        bad: dict[int, str],
        unique: dict[str, int],
        encoded: Encoded,
        encode_ms: float,
    ) -> EmbedResult:
        rows = [unique[t] if i not in bad else -1 for i, t in enumerate(request.texts)]
        raw = np.full((len(rows), embedder.backend.dim), np.nan, dtype=np.float32)
        good = [i for i, row in enumerate(rows) if row >= 0]
        raw[good] = encoded.vectors[[rows[i] for i in good]]
        vectors = postprocess(
            raw, dim=request.dim, normalize=request.normalize, dtype=request.output_dtype
        )
        return EmbedResult(
            id=request.id,
            model=request.model,
            revision=embedder.backend.revision,
            precision=request.precision,
            dim=request.dim,
            normalize=request.normalize,
            vectors=vectors,
            cached=[False] * len(rows),
            truncated=[row >= 0 and encoded.truncated[row] for row in rows],
            tokens=[encoded.tokens[row] if row >= 0 else 0 for row in rows],
            errors=sorted(bad.items()),
            timings_ms={"encode": round(encode_ms, 3), "batches": len(encoded.batch_sizes)},
        )
