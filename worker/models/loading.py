"""Loading one model at one precision: checks before fork, then the encoder after it.

Slow one-off preparation (assembling a split zip, exporting int8) happens in `check_model`, in
the worker's parent before it forks, so pool processes only open finished files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embedq.config.errors import ConfigError
from embedq.config.registry import HashingSource, ModelSpec, Precision, Registry
from embedq.config.settings import Settings
from embedq.worker.models.encoder import Encoder
from embedq.worker.models.hashing_encoder import HashingEncoder

if TYPE_CHECKING:  # both import the model stack, which only real models need
    from embedq.worker.models.precision import Placement
    from embedq.worker.models.sources import ResolvedSource

def _prepare(spec: ModelSpec, precision: Precision,
             settings: Settings) -> tuple[Placement, ResolvedSource, Path | None]:
    """Placement, resolved files and (for int8) the exported artefact of a real model."""
    from embedq.worker.models.precision import place
    from embedq.worker.models.sources import resolve_source

    placement = place(spec, precision)
    source = resolve_source(spec, settings.model_cache_dir)
    if placement.precision is not Precision.INT8:
        return placement, source, None
    from embedq.worker.models.onnx_encoder import export_int8

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
        from embedq.worker.models.torch_encoder import TorchEncoder  # noqa: F401
    return chosen


def load_encoder(registry: Registry, model: str, precision: Precision,
                 settings: Settings | None = None, threads: int = 1) -> Encoder:
    """Load one model at one precision (torch is imported only for real models)."""
    spec = registry.model(model)
    if isinstance(spec.source, HashingSource):
        return HashingEncoder(spec, spec.source)
    placement, source, exported = _prepare(spec, precision, settings or Settings())
    if exported is not None:
        from embedq.worker.models.onnx_encoder import OnnxInt8Encoder

        return OnnxInt8Encoder(spec, source, exported, threads)
    from embedq.worker.models.torch_encoder import TorchEncoder

    return TorchEncoder(spec, source, placement)
