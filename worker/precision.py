"""Which device a model runs on and at which weight precision, decided once at start-up.

fp16 and bf16 are GPU precisions: on this kind of CPU they measured 5-7x slower than fp32, so a
CPU worker refuses them at start-up instead of quietly serving at a seventh of the speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import torch

from embedq.config.errors import ConfigError
from embedq.config.registry import ModelSpec, Precision

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = structlog.get_logger(__name__)

_HALF = {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


@dataclass(frozen=True, slots=True)
class Placement:
    """A device and a weight precision, and how to put a loaded model there."""

    device: str
    precision: Precision

    def apply(self, model: SentenceTransformer) -> SentenceTransformer:
        """Cast the model's weights to this precision (fp32 needs nothing)."""
        if self.precision in _HALF:
            return model.to(_HALF[self.precision])
        return model


def place(spec: ModelSpec, precision: Precision) -> Placement:
    """Check a (model, precision) pair against the registry and the hardware."""
    if precision not in spec.precisions:
        allowed = ", ".join(p.value for p in spec.precisions)
        raise ConfigError(f"model {spec.name!r} allows precisions {allowed}, not {precision.value}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision in _HALF and device == "cpu":
        raise ConfigError(
            f"model {spec.name!r}: {precision.value} needs a CUDA GPU; on CPU it runs 5-7x slower "
            "than fp32. Start this worker with --precision fp32 on a CPU host"
        )
    if precision is Precision.INT8:
        raise ConfigError(f"model {spec.name!r}: no int8 path is available in this release")
    log.info("placement", model=spec.name, device=device, precision=precision.value)
    return Placement(device, precision)
