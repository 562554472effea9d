"""The models this process has loaded, one `Embedder` per (model, precision asked for).

Workers preload the models of the queues they consume right after fork; anything else a
message names is loaded on first use (and logged), so a worker started on an unusual queue
still answers. A model that failed to load is remembered, so every later request gets the same
clear error instead of a retry storm of loads.

Slow one-off preparation (assembling a split zip, exporting int8) happens in `check_model`, in
the worker's parent before it forks, so pool processes only open finished files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from embedq.config.errors import ConfigError, EmbedqError, ModelUnavailableError
from embedq.config.registry import HashingSource, ModelSpec, Precision, Registry
from embedq.config.settings import Settings
from embedq.worker.backend import Backend
from embedq.worker.embedder import Embedder
from embedq.worker.hashing import HashingBackend
from embedq.worker.sources import file_safe

if TYPE_CHECKING:  # both import the model stack, which only real models need
    from embedq.worker.precision import Placement
    from embedq.worker.sources import ResolvedSource

log = structlog.get_logger(__name__)


def _prepare(spec: ModelSpec, precision: Precision,
             settings: Settings) -> tuple[Placement, ResolvedSource, Path | None]:
    """Placement, resolved files and (for int8) the exported artefact of a real model."""
    from embedq.worker.precision import place
    from embedq.worker.sources import resolve_source

    placement = place(spec, precision)
    source = resolve_source(spec, settings.model_cache_dir)
    if placement.precision is not Precision.INT8:
        return placement, source, None
    from embedq.worker.onnx_backend import export_int8

    return placement, source, export_int8(spec, source, settings.model_cache_dir)


def check_model(registry: Registry, model: str, precision: str, settings: Settings) -> Precision:
    """Everything about a (model, precision) pair that can be done without loading weights.

    Run in the worker's parent before any fork, so a missing package, a corrupt split zip or a
    precision the hardware cannot serve stops the worker at start-up with the fix in the
    message, and the split zip is assembled and the int8 model exported once, not per process.
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
    placement, _, _ = _prepare(spec, chosen, settings)
    if placement.precision is not Precision.INT8:  # int8 runs on ONNX Runtime, without torch
        # Importing the model stack here, in the parent, lets pool processes share it after fork.
        from embedq.worker.st_backend import SentenceTransformerBackend  # noqa: F401
    return chosen


def load_backend(registry: Registry, model: str, precision: Precision,
                 settings: Settings | None = None, threads: int = 1) -> Backend:
    """Load one model at one precision (torch is imported only for real models)."""
    spec = registry.model(model)
    if isinstance(spec.source, HashingSource):
        return HashingBackend(spec, spec.source)
    placement, source, exported = _prepare(spec, precision, settings or Settings())
    if exported is not None:
        from embedq.worker.onnx_backend import OnnxInt8Backend

        return OnnxInt8Backend(spec, source, exported, threads)
    from embedq.worker.st_backend import SentenceTransformerBackend

    return SentenceTransformerBackend(spec, source, placement)


class ModelPool:
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
            backend = load_backend(self.registry, model, precision, self.settings, self.threads)
        except (ModelUnavailableError, ConfigError) as exc:
            self._failures[key] = exc
            raise
        spec = self.registry.model(model)
        calibration = (self.settings.model_cache_dir / "calibration"
                       / f"{model}-{file_safe(backend.revision)}-{backend.precision}.npy")
        embedder = Embedder(
            backend,
            max_batch_tokens=spec.max_batch_tokens or self.settings.max_batch_tokens,
            max_batch_size=self.settings.max_batch_size,
            calibration_file=calibration,
        )
        self._embedders[key] = embedder
        log.info("model_loaded", model=model, precision=backend.precision,
                 asked=precision.value, revision=backend.revision,
                 load_ms=round((time.perf_counter() - started) * 1e3))
        return embedder
