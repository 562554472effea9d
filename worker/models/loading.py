"""Loading one model at one precision: checks before fork, then the encoder after it.

Slow one-off preparation (assembling a split zip, probing candidates, exporting ONNX graphs)
happens in `check_model`, in the worker's parent before it forks, so pool processes only open
finished files; they inherit the parent's plan (`selection.plan`), and an ONNX plan never
imports torch in them.
"""

from __future__ import annotations

from embedq.config.errors import ConfigError
from embedq.config.registry import Precision, Registry
from embedq.config.settings import Settings
from embedq.config.sources import HashingSource
from embedq.worker.models.encoder import Encoder
from embedq.worker.models.hashing_encoder import HashingEncoder


def check_model(registry: Registry, model: str, precision: str, settings: Settings) -> Precision:
    """Everything about a (model, precision) pair that can be done before the pool forks.

    A missing package, a corrupt split zip or a precision the hardware cannot serve stops the
    worker at start-up with the fix in the message; the split zip is assembled, the candidates
    probed and the ONNX graphs exported once, not per process.
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
    if not spec.allows(chosen):
        allowed = ", ".join(p.value for p in (*spec.precisions, Precision.AUTO))
        reason = " (no fp16 activations: use bf16)" if (
            chosen is Precision.FP16 and not spec.fp16_activations) else ""
        raise ConfigError(f"model {model!r} allows precisions {allowed}, "
                          f"not {chosen.value}{reason}")
    from embedq.worker.models.selection import plan
    from embedq.worker.models.sources import resolve_source

    served = plan(spec, resolve_source(spec, settings.model_cache_dir), chosen, settings)
    if served.candidate.on_pytorch:
        # Importing the model stack here, in the parent, lets pool processes share it after fork.
        from embedq.worker.models.torch_encoder import TorchEncoder  # noqa: F401
    return chosen


def load_encoder(registry: Registry, model: str, precision: Precision,
                 settings: Settings | None = None, threads: int = 1) -> Encoder:
    """Load one model at one precision (torch is imported only for torch candidates)."""
    spec = registry.model(model)
    if isinstance(spec.source, HashingSource):
        return HashingEncoder(spec, spec.source)
    settings = settings or Settings()
    check_model(registry, model, precision.value, settings)  # a no-op after the parent's
    from embedq.worker.models.precision import Placement
    from embedq.worker.models.selection import build, plan
    from embedq.worker.models.sources import resolve_source

    source = resolve_source(spec, settings.model_cache_dir)
    served = plan(spec, source, precision, settings)
    if served.device == "cuda":
        from embedq.worker.models.torch_encoder import TorchEncoder

        return TorchEncoder(spec, source, Placement("cuda", served.precision))
    return build(spec, source, settings, served.candidate, threads, served.folder)
