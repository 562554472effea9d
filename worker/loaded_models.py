"""The models this process has loaded, one `Embedder` per (model, precision asked for).

Workers preload the models of the queues they consume right after fork; anything else a
message names is loaded on first use (and logged), so a worker started on an unusual queue
still answers. A model that failed to load is remembered, so every later request gets the same
clear error instead of a retry storm of loads.
"""

from __future__ import annotations

import time

import structlog

from embedq.config.errors import ConfigError, EmbedqError, ModelUnavailableError
from embedq.config.registry import Precision, Registry
from embedq.config.settings import Settings
from embedq.worker.batching import BatchPolicy
from embedq.worker.embedder import Embedder
from embedq.worker.models.loading import load_encoder
from embedq.worker.models.sources import file_safe

log = structlog.get_logger(__name__)


class LoadedModels:
    """Lazily loaded embedders, keyed by (model, precision asked for)."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        #: Compute threads per model in this process (set by the worker runtime after fork).
        self.threads = 1
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
            encoder = load_encoder(self.registry, model, precision, self.settings, self.threads)
        except (ModelUnavailableError, ConfigError) as exc:
            self._failures[key] = exc
            raise
        spec = self.registry.model(model)
        calibration = (self.settings.model_cache_dir / "calibration"
                       / f"{model}-{file_safe(encoder.revision)}-{encoder.precision}.npy")
        passes = BatchPolicy.from_settings(self.settings).for_model(spec.max_batch_tokens)
        embedder = Embedder(encoder, passes, calibration_file=calibration)
        self._embedders[key] = embedder
        log.info("model_loaded", model=model, precision=encoder.precision,
                 asked=precision.value, revision=encoder.revision,
                 load_ms=round((time.perf_counter() - started) * 1e3))
        return embedder
