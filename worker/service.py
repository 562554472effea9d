"""Turns a batch of claimed embed requests into one result (or one error) per request.

Requests that share a model and precision are embedded together: their texts are validated one
by one, deduplicated per prompt (routes with different prompts share the model, not vectors),
and sent through the model in passes once per prompt, skipping texts whose callers' deadlines
have passed; each request then gets its own post-processing (dimension, normalisation, dtype).
A bad item costs only itself (its row is NaN and its error is listed); a bad request costs only
itself.

With the vector cache on, every item is looked up in both tiers first (one Redis round trip per
batch of requests), only the misses go through the model, and they are written back in one
pipelined call; each item's ``cached`` flag says which it was. A cache problem never fails a
request.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import NamedTuple

import structlog

from embedq.config.errors import EmbedqError, PayloadError, UnknownModelError
from embedq.config.registry import OutputDtype, Precision, Registry
from embedq.config.settings import Settings
from embedq.tasks.cache_codec import CachedVector, ModelInfo, place_cached
from embedq.tasks.codec import empty_vectors, vector_width
from embedq.tasks.names import cache_key
from embedq.tasks.schema import EmbedRequest, EmbedResult
from embedq.tasks.validation import text_problem
from embedq.tasks.wire import DROPPED_ROW
from embedq.worker.cache_tiered import TieredCache, no_cache
from embedq.worker.embedder import Embedder, Encoded, postprocess
from embedq.worker.loaded_models import LoadedModels

log = structlog.get_logger(__name__)
#: The error of a row a stopping worker did not compute (never replied: its message goes back).
HALTED_ROW = "not computed: the worker is stopping"

Outcome = EmbedResult | EmbedqError


class Handled(NamedTuple):
    """One outcome per request, in order, and how many texts were dropped uncomputed.

    ``unfinished`` are the positions of requests some of whose texts were not computed because
    the worker is stopping (``halt``): their outcomes are incomplete and must not be replied;
    the caller hands those messages back to their queue.
    """

    outcomes: list[Outcome]
    dropped: int
    unfinished: frozenset[int] = frozenset()


def _wanted(deadlines: list[float | None]) -> Callable[[list[int], float], list[int]]:
    """Asked before each forward pass, expected to take ``pass_s``: which of these texts can
    still reach a caller before its deadline?"""
    def wanted(rows: list[int], pass_s: float) -> list[int]:
        ready = time.time() + pass_s
        return [row for row in rows if (deadline := deadlines[row]) is None or deadline > ready]
    return wanted


def _wanted_or_none(deadlines: list[float | None]
                    ) -> Callable[[list[int], float], list[int]] | None:
    """`_wanted` where some text has a deadline; None (nothing to check) where none has."""
    return _wanted(deadlines) if any(d is not None for d in deadlines) else None


class EmbedService:
    """The worker's request handling, free of Celery so it can be tested and reused."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        models: LoadedModels,
        cache: Callable[[], TieredCache | None] = no_cache,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.models = models
        #: This process's vector cache (see `process_cache`); none unless the caller wires one,
        #: so a service built in a test or a script never opens a connection by itself.
        self.cache = cache

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

    def handle(self, requests: list[EmbedRequest],
               halt: Callable[[], bool] | None = None) -> Handled:
        """One outcome per request, in order; never raises for a request's own problems.

        ``halt`` is asked before each forward pass: once it holds, no further pass starts and
        the requests left incomplete are listed in ``unfinished`` (the vectors already computed
        still go to the cache, so whoever serves them next reads them there)."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        groups: dict[tuple[str, Precision], list[int]] = defaultdict(list)
        for position, request in enumerate(requests):
            try:
                groups[(request.model, self.check(request))].append(position)
            except EmbedqError as exc:
                outcomes[position] = exc
        dropped = 0
        unfinished: set[int] = set()
        for (model, precision), members in groups.items():
            try:
                embedder = self.models.get(model, precision)
            except EmbedqError as exc:
                for position in members:
                    outcomes[position] = exc
                continue
            results, skipped, halted = self._embed_group(embedder, [requests[p] for p in members],
                                                         halt)
            dropped += skipped
            unfinished.update(members[i] for i in halted)
            for position, result in zip(members, results, strict=True):
                outcomes[position] = result
        return Handled([outcome for outcome in outcomes if outcome is not None], dropped,
                       frozenset(unfinished))

    def _embed_group(self, embedder: Embedder, requests: list[EmbedRequest],
                     halt: Callable[[], bool] | None = None
                     ) -> tuple[list[EmbedResult], int, set[int]]:
        started = time.perf_counter()
        limit = self.settings.max_text_chars
        problems = [
            {i: p for i, text in enumerate(r.texts) if (p := text_problem(text, limit))}
            for r in requests
        ]
        cache = self.cache()
        encoder = embedder.encoder
        info = ModelInfo(encoder.revision, encoder.max_tokens, encoder.precision)
        keys = [  # no cache, no keys: hashing every text for nothing is a cost per request
            {i: cache_key(r.model, info.space(r), t) for i, t in enumerate(r.texts) if i not in bad}
            if cache is not None else {}
            for r, bad in zip(requests, problems, strict=True)
        ]
        hits = self._lookup(cache, requests, keys)
        looked_up = time.perf_counter()
        # Distinct texts per prompt: routes with different prompts share the model, not vectors.
        unique: dict[str, dict[str, int]] = defaultdict(dict)
        # Per prompt, per unique text: the latest of its callers' deadlines (None: no limit).
        deadlines: dict[str, list[float | None]] = defaultdict(list)
        for request, bad, found in zip(requests, problems, hits, strict=True):
            texts, late = unique[request.prompt], deadlines[request.prompt]
            for i, text in enumerate(request.texts):
                if i not in bad and i not in found:
                    row = texts.setdefault(text, len(texts))
                    own = request.deadlines[i] if request.deadlines is not None else None
                    if row == len(late):
                        late.append(own)
                    elif late[row] is not None:
                        late[row] = None if own is None else max(own, late[row] or 0)
        encoded = {
            prompt: embedder.encode(list(texts), _wanted_or_none(deadlines[prompt]),
                                    prompt=prompt, halt=halt)
            for prompt, texts in unique.items() if texts
        }
        timings = {
            "cache_lookup": round((looked_up - started) * 1e3, 3),
            "encode": round((time.perf_counter() - looked_up) * 1e3, 3),
            "batches": sum(len(e.batch_sizes) for e in encoded.values()),
        }
        results = [
            self._result(embedder, request, bad, found, unique[request.prompt],
                         encoded.get(request.prompt), timings)
            for request, bad, found in zip(requests, problems, hits, strict=True)
        ]
        if cache is not None:
            self._write_back(cache, results, keys, hits)
            cache.announce(requests[0].model, requests[0].precision, info)
            cache.report()
        halted = {i for i, result in enumerate(results)
                  if any(why == HALTED_ROW for _, why in result.errors)}
        return results, sum(len(e.dropped) for e in encoded.values()), halted

    @staticmethod
    def _lookup(
        cache: TieredCache | None, requests: list[EmbedRequest], keys: list[dict[int, str]]
    ) -> list[dict[int, CachedVector]]:
        """Per request, the positions found in the cache (one lookup for the whole group)."""
        if cache is None:
            return [{} for _ in requests]
        wanted: dict[str, int] = {}
        for request, per_item in zip(requests, keys, strict=True):
            wanted.update(dict.fromkeys(per_item.values(),
                                        vector_width(request.dim, request.output_dtype)))
        found = dict(zip(wanted, cache.get_many(list(wanted), list(wanted.values())), strict=True))
        return [
            {i: entry for i, key in per_item.items() if (entry := found[key]) is not None}
            for per_item in keys
        ]

    @staticmethod
    def _write_back(
        cache: TieredCache,
        results: list[EmbedResult],
        keys: list[dict[int, str]],
        hits: list[dict[int, CachedVector]],
    ) -> None:
        """Store every freshly computed vector in both tiers, in one pipelined write."""
        fresh: dict[str, CachedVector] = {}
        for result, per_item, found in zip(results, keys, hits, strict=True):
            skipped = {i for i, _ in result.errors}  # dropped uncomputed: nothing to keep
            for i, key in per_item.items():
                if i not in found and i not in skipped:
                    fresh[key] = CachedVector(
                        result.vectors[i], result.tokens[i], result.truncated[i]
                    )
        started = time.perf_counter()
        cache.set_many(fresh)
        for result in results:
            result.timings_ms["cache_write"] = round((time.perf_counter() - started) * 1e3, 3)

    def _result(
        self,
        embedder: Embedder,
        request: EmbedRequest,
        bad: dict[int, str],
        found: dict[int, CachedVector],
        unique: dict[str, int],
        encoded: Encoded | None,
        timings: dict[str, float],
    ) -> EmbedResult:
        rows = {
            i: unique[text]
            for i, text in enumerate(request.texts)
            if i not in bad and i not in found
        }
        if encoded is not None and encoded.dropped:
            skipped = {i for i, row in rows.items() if row in encoded.dropped}
            rows = {i: row for i, row in rows.items() if i not in skipped}
            bad = {**bad, **dict.fromkeys(skipped, DROPPED_ROW)}
        if encoded is not None and encoded.halted:  # not computed: the request goes back
            halted = {i for i, row in rows.items() if row in encoded.halted}
            rows = {i: row for i, row in rows.items() if i not in halted}
            bad = {**bad, **dict.fromkeys(halted, HALTED_ROW)}
        output_dtype = OutputDtype(request.output_dtype)  # checked by `check`
        vectors = empty_vectors(len(request.texts), request.dim, output_dtype)
        ranges = (embedder.int8_ranges(request.dim, request.normalize)
                  if output_dtype is OutputDtype.INT8 and rows else None)
        tokens = [0] * len(request.texts)
        truncated = [False] * len(request.texts)
        if rows and encoded is not None:
            vectors[list(rows)] = postprocess(
                encoded.vectors[list(rows.values())], dim=request.dim,
                normalize=request.normalize, output_dtype=output_dtype, ranges=ranges,
            )
            for i, row in rows.items():
                tokens[i], truncated[i] = encoded.tokens[row], encoded.truncated[row]
        place_cached(vectors, found, normalize=request.normalize, tokens=tokens,
                     truncated=truncated)
        return EmbedResult(
            id=request.id,
            model=request.model,
            revision=embedder.encoder.revision,
            precision=embedder.encoder.precision,
            dim=request.dim,
            normalize=request.normalize,
            vectors=vectors,
            cached=[i in found for i in range(len(request.texts))],
            truncated=truncated,
            tokens=tokens,
            errors=sorted(bad.items()),
            timings_ms=dict(timings),
        )
