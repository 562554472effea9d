"""OpenVINO artefacts of a model (optional backend): the unfused exported graph as OpenVINO IR,
fp32, and the same graph statically quantized to int8 by NNCF.

OpenVINO reads the plain ``torch.onnx.export`` graph (not ONNX Runtime's fused one, whose
contrib ops it does not know) and applies its own fusions when it compiles. The int8 variant is
NNCF's post-training quantization with calibrated activation ranges (``ModelType.TRANSFORMER``:
SmoothQuant, the attention's Q, K, V projections quantized, softmax and layer norms left fp32,
and the MatMul kinds ``models.json`` keeps in fp32 for int8 left there too),
which OpenVINO's CPU plugin runs on AMX-INT8 / VNNI kernels where the CPU has them. Calibration
uses the bundled STS sentences the probe does not judge (`probe.calibration_texts`), never an
outside data set. Built once per model revision in the worker's parent, checked against PyTorch
and hashed like the ONNX artefacts (`onnx_export.build_artefact`); pool processes only open the
finished IR (openvino, tokenizers and numpy: no torch).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from embedq.config.errors import ModelUnavailableError
from embedq.config.registry import ModelSpec, Precision
from embedq.worker.models.onnx_encoder import features, tokenizer
from embedq.worker.models.onnx_export import (
    Run,
    artefact_dir,
    build_artefact,
    classify_matmuls,
    export_raw,
    pooled_torch,
)
from embedq.worker.models.sources import ResolvedSource

XML_FILE = "model.xml"
BIN_FILE = "model.bin"
FILES = (XML_FILE, BIN_FILE)
INT8_RECIPE = "nncf-static-transformer-v1"
_CALIBRATION_BATCH = 16
#: The libraries each OpenVINO precision needs: NNCF only to build the int8 graph.
_NEEDS = {Precision.FP32: ("openvino",), Precision.BF16: ("openvino",),
          Precision.INT8: ("openvino", "nncf")}


def missing_library(precision: Precision) -> str | None:
    """The first library an OpenVINO candidate at ``precision`` needs that is not installed
    (looked up without importing it), or None."""
    return next((name for name in _NEEDS[precision] if importlib.util.find_spec(name) is None),
                None)


def runner(xml: Path, threads: int, hint: str) -> tuple[Run, int]:
    """(one synchronous inference per call, the output dimension) of the IR compiled for the
    CPU plugin at one inference precision (``f32`` or ``bf16``).

    ``threads`` intra-op threads, one stream, and no thread pinning: a pool process pinned by
    OpenVINO to core 0 would share it with its siblings (pool processes are forked, each compiles
    its own model after the fork).
    """
    import openvino as ov

    model = ov.Core().compile_model(str(xml), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": hint, "ENABLE_CPU_PINNING": False})
    request = model.create_infer_request()

    def run(inputs: dict[str, Any]) -> Any:
        return request.infer(inputs)[0].copy()  # the request reuses its output buffer

    return run, int(model.outputs[0].get_partial_shape()[-1].get_length())


def _quantized(model: Any, raw: Path, work: Path, max_tokens: int,
               keep: tuple[str, ...]) -> Any:
    """``model`` statically quantized by NNCF, calibrated on `probe.calibration_texts`, the
    MatMuls of the kinds in ``keep`` (``models.json`` ``int8.keep_fp32``, as for ONNX) left
    in fp32: the raw graph's node names are OpenVINO's, so `classify_matmuls` finds them."""
    import nncf

    from embedq.worker.models.probe import calibration_texts

    texts = calibration_texts()
    loaded = tokenizer(work, max_tokens)
    batches = [features(loaded, texts[i:i + _CALIBRATION_BATCH])
               for i in range(0, len(texts), _CALIBRATION_BATCH)]
    kept = [name for name, kind in classify_matmuls(raw).items()
            if kind in keep or kind.split(":")[0] in keep]
    return nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(batches),
                         ignored_scope=nncf.IgnoredScope(names=kept, validate=False))


def exported_openvino(spec: ModelSpec, source: ResolvedSource, cache_dir: Path,
                      precision: Precision) -> Path:
    """The folder of this model's OpenVINO IR at ``precision`` (fp32, or int8), built now if
    missing or corrupt. bf16 is the fp32 IR compiled with the bf16 hint (`OpenVinoEncoder`)."""
    variant = Precision.INT8 if precision is Precision.INT8 else Precision.FP32
    if (library := missing_library(precision)) is not None:
        raise ModelUnavailableError(
            f"model {spec.name!r}: openvino-{precision.value} needs the {library!r} package, "
            "which is not installed; fix: pip install 'embedq[worker]'")
    keep = spec.int8.keep_fp32 if spec.int8 else ()
    name = "openvino-fp32" if variant is Precision.FP32 else (
        f"openvino-int8-{INT8_RECIPE}" + "".join(f"-keep-{k.replace(':', '')}" for k in keep))
    final = artefact_dir(spec, source, cache_dir) / name

    def make(model_dir: Path, work: Path, max_tokens: int) -> tuple[Any, dict[str, Any]]:
        import openvino as ov

        pooled = pooled_torch(model_dir, spec.pooling)
        raw = work / "raw.onnx"
        export_raw(pooled, model_dir, raw, max_tokens)
        model = ov.Core().read_model(str(raw))
        if variant is Precision.INT8:
            model = _quantized(model, raw, work, max_tokens, keep)
        # The default would store fp32 weights as fp16: this IR must be the fp32 model.
        ov.save_model(model, str(work / XML_FILE), compress_to_fp16=False)
        raw.unlink()
        return pooled, {"backend": "openvino", "openvino": ov.get_version()}

    return build_artefact(spec, source, final, f"openvino-{variant.value}", make,
                          lambda work: runner(work / XML_FILE, 1, "f32")[0], FILES)
