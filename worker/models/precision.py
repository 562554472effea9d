"""Which device a model runs on and at which weight precision, decided once at start-up.

fp16 and bf16 are GPU precisions: on this kind of CPU they measured 5-7x slower than fp32, so a
CPU worker refuses them at start-up instead of quietly serving at a seventh of the speed. int8 is
the CPU path (ONNX Runtime, see `onnx_encoder`) and is refused on a GPU, where fp16/bf16 are
the fast ones. ``auto`` picks from the hardware and the model's measured int8 quality, and logs
what it chose and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from embedq.config.errors import ConfigError
from embedq.config.registry import (
    INT8_MAX_SPEARMAN_DROP,
    INT8_MIN_MEAN_COSINE,
    ModelSpec,
    Precision,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = structlog.get_logger(__name__)

_HALF = (Precision.FP16, Precision.BF16)
_NVIDIA_DRIVER = Path("/proc/driver/nvidia")


@dataclass(frozen=True, slots=True)
class Placement:
    """A device and a weight precision, and how to put a loaded model there."""

    device: str
    precision: Precision

    def apply(self, model: SentenceTransformer) -> SentenceTransformer:
        """Cast the model's weights to this precision (fp32 needs nothing)."""
        if self.precision in _HALF:
            import torch

            return model.to(torch.float16 if self.precision is Precision.FP16 else torch.bfloat16)
        return model


def cuda_support() -> tuple[bool, bool]:
    """(CUDA usable, bf16 supported on it).

    Without a loaded NVIDIA driver there is no CUDA, and torch (about 220 MiB per process) is not
    imported just to be told so: an int8 worker then runs on ONNX Runtime alone.
    """
    if not _NVIDIA_DRIVER.exists():
        return False, False
    import torch

    cuda = torch.cuda.is_available()
    return cuda, cuda and torch.cuda.is_bf16_supported()


def choose_auto(spec: ModelSpec, cuda: bool, bf16_ok: bool) -> tuple[Precision, str]:
    """The precision ``auto`` means for this model on this hardware, and why."""
    if cuda:
        if bf16_ok and Precision.BF16 in spec.precisions:
            return Precision.BF16, "CUDA with bf16 support"
        if Precision.FP16 in spec.precisions:
            return Precision.FP16, "CUDA; the model allows fp16"
        return Precision.FP32, "CUDA, but the model allows neither bf16 nor fp16 here"
    quality = spec.int8
    if Precision.INT8 not in spec.precisions or quality is None:
        return Precision.FP32, "CPU; the model has no int8 path"
    if quality.holds():
        return Precision.INT8, (
            f"CPU; int8 measured mean cosine {quality.mean_cosine:.4f} >= "
            f"{INT8_MIN_MEAN_COSINE} and Spearman drop {quality.spearman_drop:+.4f} <= "
            f"{INT8_MAX_SPEARMAN_DROP}"
        )
    return Precision.FP32, (
        f"CPU; int8 measured mean cosine {quality.mean_cosine:.4f} and Spearman drop "
        f"{quality.spearman_drop:+.4f} miss the targets (>= {INT8_MIN_MEAN_COSINE}, "
        f"<= {INT8_MAX_SPEARMAN_DROP})"
    )


def place(spec: ModelSpec, precision: Precision) -> Placement:
    """Check a (model, precision) pair against the registry and the hardware (auto resolved)."""
    if not spec.allows(precision):
        allowed = ", ".join(p.value for p in (*spec.precisions, Precision.AUTO))
        reason = " (no fp16 activations: use bf16)" if (
            precision is Precision.FP16 and not spec.fp16_activations) else ""
        raise ConfigError(f"model {spec.name!r} allows precisions {allowed}, "
                          f"not {precision.value}{reason}")
    cuda, bf16_ok = cuda_support()
    device = "cuda" if cuda else "cpu"
    if precision is Precision.AUTO:
        precision, why = choose_auto(spec, cuda, bf16_ok)
        log.info("precision_auto", model=spec.name, device=device, chosen=precision.value,
                 reason=why)
    if precision in _HALF and not cuda:
        raise ConfigError(
            f"model {spec.name!r}: {precision.value} needs a CUDA GPU; on CPU it runs 5-7x slower "
            "than fp32. Start this worker with --precision fp32 (or auto) on a CPU host"
        )
    if precision is Precision.INT8 and cuda:
        raise ConfigError(
            f"model {spec.name!r}: int8 runs on ONNX Runtime's CPU kernels; on a GPU use "
            "--precision fp16, bf16 or auto"
        )
    log.info("placement", model=spec.name, device=device, precision=precision.value)
    return Placement(device, precision)
