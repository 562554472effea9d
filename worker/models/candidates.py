"""What can serve a model: a runtime and a weight precision, one typed value (``onnx-int8``).

A candidate is named by the same string everywhere a person sees one (``EMBEDQ_AUTO_CANDIDATES``,
logs, the cached decision files, benchmark tables): ``<runtime>-<precision>``. Inside the worker
it is a `Candidate`, so "does this run on ONNX Runtime?" is a field comparison and a misspelt
name fails where it is read, with the known names in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from embedq.config.errors import ConfigError
from embedq.config.registry import Precision


class Runtime(StrEnum):
    """The library that runs the forward pass."""

    TORCH = "torch"
    ONNX = "onnx"
    #: PyTorch with fp32 weights under ``torch.autocast``: the matmuls run at the precision.
    AUTOCAST = "autocast"
    #: OpenVINO's CPU plugin (optional): its own fusions and oneDNN kernels, AMX where present.
    OPENVINO = "openvino"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A runtime and the weight precision it runs the model at."""

    runtime: Runtime
    precision: Precision

    @property
    def on_pytorch(self) -> bool:
        """Whether PyTorch runs it (plain or under autocast), so the parent imports it."""
        return self.runtime in (Runtime.TORCH, Runtime.AUTOCAST)

    @property
    def exported(self) -> bool:
        """Whether it runs an exported graph (ONNX Runtime, OpenVINO): built in the parent
        before the fork, opened by pool processes that never import torch."""
        return not self.on_pytorch

    def __str__(self) -> str:
        return f"{self.runtime.value}-{self.precision.value}"

    @classmethod
    def parse(cls, name: str) -> Candidate:
        """The candidate a name such as ``onnx-int8`` stands for; unknown names are refused."""
        for known in KNOWN:
            if str(known) == name:
                return known
        raise ConfigError(f"unknown precision candidate {name!r}; known: "
                          f"{', '.join(map(str, KNOWN))}")


TORCH_FP32 = Candidate(Runtime.TORCH, Precision.FP32)
ONNX_FP32 = Candidate(Runtime.ONNX, Precision.FP32)
ONNX_INT8 = Candidate(Runtime.ONNX, Precision.INT8)
TORCH_FP16 = Candidate(Runtime.TORCH, Precision.FP16)
TORCH_BF16 = Candidate(Runtime.TORCH, Precision.BF16)
#: fp32 weights, bf16 matmuls: on AVX-512-BF16 / AMX it measured faster than bf16 weights and
#: closer to fp32 (MiniLM on a Zen 4 EPYC: 4.6x torch fp32 at cosine 0.99999).
AUTOCAST_BF16 = Candidate(Runtime.AUTOCAST, Precision.BF16)
#: OpenVINO on the unfused exported graph; fp32 with INFERENCE_PRECISION_HINT=f32 (its CPU plugin
#: runs bf16 by default on a CPU with bf16 units), bf16 with the hint bf16, int8 quantized
#: statically by NNCF. On an AMX Xeon (MiniLM, one thread) they measured 1.09x, 3.3x and 3.6x
#: PyTorch fp32, the fastest at each precision there.
OPENVINO_FP32 = Candidate(Runtime.OPENVINO, Precision.FP32)
OPENVINO_BF16 = Candidate(Runtime.OPENVINO, Precision.BF16)
OPENVINO_INT8 = Candidate(Runtime.OPENVINO, Precision.INT8)
OPENVINO = (OPENVINO_FP32, OPENVINO_BF16, OPENVINO_INT8)
#: What every other candidate is measured against, and what a failure falls back to.
REFERENCE = TORCH_FP32
KNOWN = (TORCH_FP32, ONNX_FP32, ONNX_INT8, TORCH_FP16, TORCH_BF16, AUTOCAST_BF16,
         OPENVINO_FP32, OPENVINO_BF16, OPENVINO_INT8)


def on_torch(precision: Precision) -> Candidate:
    """PyTorch at ``precision`` (the half precisions run only there)."""
    return Candidate(Runtime.TORCH, precision)
