"""OpenVINO artefacts of a model (optional backend): the unfused exported graph as OpenVINO IR,
fp32, and the same graph quantized to int8 by NNCF, by one of two recipes (``models.json``
``int8.openvino``).

OpenVINO reads the plain ``torch.onnx.export`` graph (not ONNX Runtime's fused one, whose
contrib ops it does not know) and applies its own fusions when it compiles. The int8 recipes:

* ``static`` (the default): NNCF's post-training quantization with calibrated activation ranges
  (``ModelType.TRANSFORMER``: SmoothQuant, the attention's Q, K, V projections quantized,
  softmax and layer norms left fp32, and the MatMul kinds ``models.json`` keeps in fp32 for
  int8 left there too), which OpenVINO's CPU plugin runs on AMX-INT8 / VNNI kernels where the
  CPU has them. Calibration uses the bundled STS sentences the probe does not judge
  (`probe.calibration_texts`), never an outside data set.
* ``weights``: NNCF's int8 weight compression (per output channel, asymmetric; embedding tables
  included), no calibration. The CPU plugin keeps the weights int8 and quantizes each
  FullyConnected layer's activations at run time per group of `DYNAMIC_GROUP` input channels,
  so the ranges follow every input. mpnet needs it: its static int8 met the STS bar but a
  384-token repetition fell to cosine 0.28 (activations far outside anything calibrated),
  while this recipe kept every check text at cosine >= 0.997, in about a quarter of fp32's
  weight bytes (README, "mpnet int8").

Built once per model revision in the worker's parent, checked against PyTorch and hashed like the
ONNX artefacts (`onnx_export.build_artefact`); pool processes only open the finished IR
(openvino, tokenizers and numpy: no torch).
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
WEIGHTS_RECIPE = "nncf-weights-int8-asym-v1"
#: Input channels per run-time activation scale of a weight-compressed layer (OpenVINO's CPU
#: default in 2026.4, pinned so a changed library default cannot change the vectors unnoticed;
#: 0 would keep those activations fp32, which measured half the speed at no gain in cosine).
DYNAMIC_GROUP = 32
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
        "INFERENCE_PRECISION_HINT": hint, "ENABLE_CPU_PINNING": False,
        # Only weight-compressed layers (the ``weights`` int8 recipe) are affected.
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": DYNAMIC_GROUP})
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


def _compressed(model: Any) -> Any:
    """``model`` with every weight (MatMuls and embedding tables) compressed to int8 by NNCF,
    per output channel and asymmetric (symmetric measured worse on mpnet: a check text's cosine
    fell to 0.77)."""
    import nncf

    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def weights_recipe(spec: ModelSpec) -> bool:
    """Whether the model's OpenVINO int8 is the ``weights`` recipe (else ``static``)."""
    return spec.int8 is not None and spec.int8.openvino == "weights"


def int8_folder_name(spec: ModelSpec) -> str:
    """The int8 IR's folder name: its recipe (and, for ``static``, the kinds kept in fp32),
    which the vectors' revision carries, so two recipes never share a cache entry."""
    if weights_recipe(spec):
        return f"openvino-int8-{WEIGHTS_RECIPE}"
    keep = spec.int8.keep_fp32 if spec.int8 else ()
    return f"openvino-int8-{INT8_RECIPE}" + "".join(f"-keep-{k.replace(':', '')}" for k in keep)


def exported_openvino(spec: ModelSpec, source: ResolvedSource, cache_dir: Path,
                      precision: Precision) -> Path:
    """The folder of this model's OpenVINO IR at ``precision`` (fp32, or int8 by the model's
    recipe), built now if missing or corrupt. bf16 is the fp32 IR compiled with the bf16 hint
    (`OpenVinoEncoder`)."""
    variant = Precision.INT8 if precision is Precision.INT8 else Precision.FP32
    if (library := missing_library(precision)) is not None:
        raise ModelUnavailableError(
            f"model {spec.name!r}: openvino-{precision.value} needs the {library!r} package, "
            "which is not installed; fix: pip install 'embedq[worker]'")
    keep = spec.int8.keep_fp32 if spec.int8 else ()
    weights = weights_recipe(spec)
    name = "openvino-fp32" if variant is Precision.FP32 else int8_folder_name(spec)
    final = artefact_dir(spec, source, cache_dir) / name

    def make(model_dir: Path, work: Path, max_tokens: int) -> tuple[Any, dict[str, Any]]:
        import openvino as ov

        pooled = pooled_torch(model_dir, spec.pooling)
        raw = work / "raw.onnx"
        export_raw(pooled, model_dir, raw, max_tokens)
        model = ov.Core().read_model(str(raw))
        if variant is Precision.INT8:
            model = (_compressed(model) if weights
                     else _quantized(model, raw, work, max_tokens, keep))
        # The default would store fp32 weights as fp16: this IR must be the fp32 model.
        ov.save_model(model, str(work / XML_FILE), compress_to_fp16=False)
        raw.unlink()
        recipe = {} if variant is Precision.FP32 else {
            "int8_recipe": "weights" if weights else "static",
            **({"dynamic_quantization_group_size": DYNAMIC_GROUP} if weights else {})}
        return pooled, {"backend": "openvino", "openvino": ov.get_version(), **recipe}

    return build_artefact(spec, source, final, f"openvino-{variant.value}", make,
                          lambda work: runner(work / XML_FILE, 1, "f32")[0], FILES)
