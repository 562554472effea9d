"""Weight precisions on a device: placing a torch model, and what ``auto`` means on CUDA.

On a CUDA GPU the half precisions are the fast ones, so ``auto`` is decided from the hardware
(`choose_cuda`). On a CPU no such rule holds: the same kind of machine can be an AVX2 EPYC where
bf16 runs at 0.14x fp32 or an AMX Xeon where it runs at 1.78x, so every CPU choice is measured
(`selection`) among the candidates of `candidates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embedq.config.registry import ModelSpec, Precision

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

HALF = (Precision.FP16, Precision.BF16)
_NVIDIA_DRIVER = Path("/proc/driver/nvidia")


@dataclass(frozen=True, slots=True)
class Placement:
    """A device and a weight precision, and how to put a loaded torch model there."""

    device: str
    precision: Precision

    def apply(self, model: SentenceTransformer) -> SentenceTransformer:
        """Cast the model's weights to this precision (fp32 needs nothing)."""
        if self.precision in HALF:
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


def choose_cuda(spec: ModelSpec, bf16_ok: bool) -> tuple[Precision, str]:
    """The precision ``auto`` means for this model on a CUDA GPU, and why."""
    if bf16_ok and Precision.BF16 in spec.precisions:
        return Precision.BF16, "CUDA with bf16 support"
    if Precision.FP16 in spec.precisions:
        return Precision.FP16, "CUDA; the model allows fp16"
    return Precision.FP32, "CUDA, but the model allows neither bf16 nor fp16 here"
