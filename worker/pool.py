"""The models this process has loaded, one `Embedder` per (model, precision).

Workers preload the models of the queues they consume right after fork; anything else a
message names is loaded on first use (and logged), so a worker started on an unusual queue
still answers. A model that failed to load is remembered, so every later request gets the same
clear error instead of a retry storm of loads.
"""

from __future__ import annotations

import time

import structlog

from embedq.config.errors import ConfigError, EmbedqError, ModelUnavailableError
from embedq.config.registry import HashingSource, Precision, Registry
from embedq.config.settings import Settings
from embedq.worker.backend import Backend
from embedq.worker.embedder import Embedder
from embedq.worker.hashing import HashingBackend

log = structlog.get_logger(__name__)


def check_model(registry: Registry, model: str, precision: str) -> Precision:
    """Everything about a (model, precision) pair that can be checked without loading weights.

    Run in the worker's parent before any fork, so a missing package or a precision the hardware
    cannot serve stops the worker at start-up with the fix in the message.
    """
    spec = registry.model(model)
    try:
        chosen = Precision(precision)
    except ValueError:
        known = ", ".join(p.value for p in Precision)
        raise ConfigError(f"unknown precision {precision!r}; known: {known}") from None
    if isinstance(spec.source, HashingSource):
        if chosen not in spec.precisions:
            raise ConfigError(f"model {model!r} has no precision {chosen.value}")
        return chosen
    # Importing the model stack here, in the parent, lets pool processes share it after fork.
    from embedq.worker.precision import place
    from embedq.worker.sources import resolve_source
    from embedq.worker.st_backend import SentenceTransformerBackend  # noqa: F401

    place(spec, chosen)
    resolve_source(spec)
    return chosen


def load_backend(registry: Registry, model: str, precision: Precision) -> Backend:
    """Load one model at one precision (torch is imported only for real models)."""
    spec = registry.model(model)
    if isinstance(spec.source, HashingSource):
        return HashingBackend(spec, spec.source)
    from embedq.worker.precision import place
    from embedq.worker.sources import resolve_source
    from embedq.worker.st_backend import SentenceTransformerBackend

    return SentenceTransformerBackend(spec, resolve_source(spec), place(spec, precision))


class ModelPool:
    """Lazily loaded embedders, keyed by (model, precision)."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._embedders: dict[tuple[str, Precision], Embedder] = {}
        self._failures: dict[tuple[str, Precision], EmbedqError] = {}

    def get(self, model: str, precision: Precision) -> Embedder:
        """The embedder for a model at a precision, loading it on first use."""
        key = (model, precision)
        if key in self._embedders:
            return self._embedders[key]
        if key in self._failures:
            raise self._failures[key]
        started = time.perf_counter()
        try:
            backend = load_backend(self.registry, model, precision)
        except (ModelUnavailableError, ConfigError) as exc:
            self._failures[key] = exc
            raise
        spec = self.registry.model(model)
        embedder = Embedder(
            backend,
            max_batch_tokens=spec.max_batch_tokens or self.settings.max_batch_tokens,
            max_batch_size=self.settings.max_batch_size,
        )
        self._embedders[key] = embedder
        log.info("model_loaded", model=model, precision=precision.value,
                 revision=backend.revision, load_ms=round((time.perf_counter() - started) * 1e3))
        return embedder
