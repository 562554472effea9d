"""An `openvino_export` folder as an `Encoder`, on OpenVINO's CPU plugin alone (no torch).

The same tokenization, prompt handling and revision rules as `OnnxEncoder`; only the forward
pass differs. The precision is explicit because OpenVINO's CPU plugin runs bf16 by default on a
CPU with bf16 units: fp32 and int8 compile with ``INFERENCE_PRECISION_HINT=f32`` (int8 layers
stay int8; what NNCF left in floating point stays fp32), bf16 with ``bf16``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from embedq.config.registry import ModelSpec, Precision
from embedq.worker.models.onnx_encoder import OnnxEncoder
from embedq.worker.models.openvino_export import BIN_FILE, XML_FILE, runner
from embedq.worker.models.sources import ResolvedSource


class OpenVinoEncoder(OnnxEncoder):
    """OpenVINO IR (fp32, or NNCF int8) compiled at one inference precision."""

    backend = "openvino"
    weights_file = BIN_FILE

    def __init__(self, spec: ModelSpec, source: ResolvedSource, folder: Path, threads: int,
                 precision: Precision) -> None:
        self._hint = "bf16" if precision is Precision.BF16 else "f32"
        super().__init__(spec, source, folder, threads)
        # bf16 runs the fp32 IR: same revision as PyTorch, the results say bf16.
        self.precision = precision.value

    def _open(self, folder: Path, threads: int) -> tuple[Callable[[dict[str, np.ndarray]],
                                                                  np.ndarray], int]:
        return runner(folder / XML_FILE, threads, self._hint)
