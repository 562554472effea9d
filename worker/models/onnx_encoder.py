"""int8 on CPU: the model exported to ONNX, dynamically quantized, run by ONNX Runtime.

The recipe was chosen by measurement on an AVX2 CPU without VNNI (torch ``quantize_dynamic``
lost too much quality, OpenVINO int8 was not faster; figures in ``benchmarks/bench_precision.py``
and the int8 research notes):

* transformer + mean pooling exported with ``torch.onnx.export`` (TorchScript exporter, opset
  17), no optimum, whose pins conflict with sentence-transformers 6;
* ``quantize_dynamic`` with QInt8 per-channel weights on MatMul and Gather, and
  ``reduce_range=True``, which is mandatory here: without it the u8s8 kernels saturate and mpnet
  comes out with cosine 0.01 to fp32 while MiniLM looks fine;
* optionally (the registry's ``int8.keep_ffn_output_fp32``) the FFN output projections stay
  fp32: on mpnet they carry most of the int8 error.

Export runs once per (model revision, recipe) in the worker's parent before it forks, and is
cached in the model cache folder; the artefact must reach a mean cosine of `MIN_EXPORT_COSINE` to
the fp32 model on `CHECK_TEXTS` or it is refused, because int8 kernels differ per CPU and
runtime version. At run time only onnxruntime, tokenizers and numpy are used.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from embedq.config.errors import ModelUnavailableError
from embedq.config.files import building_dir
from embedq.config.registry import ModelSpec
from embedq.worker.models.quantize import SEED_TEXTS
from embedq.worker.models.sources import ResolvedSource, file_safe

log = structlog.get_logger(__name__)

RECIPE = "ort-dyn-qint8-pc-rr-v2"
MODEL_FILE = "model_int8.onnx"
META_FILE = "meta.json"
MIN_EXPORT_COSINE = 0.98
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "vocab.txt", "config.json", "sentence_bert_config.json")
# The export's acceptance check embeds these (varied, not from any evaluation set).
CHECK_TEXTS = SEED_TEXTS


def _tokenizer(model_dir: Path, max_tokens: int | None) -> Any:
    """The fast tokenizer from ``tokenizer.json``; padded and truncated when max_tokens is set."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    if max_tokens is not None:
        tokenizer.enable_truncation(max_tokens)
        pad = tokenizer.token_to_id("<pad>")  # mpnet
        pad = tokenizer.token_to_id("[PAD]") if pad is None else pad  # BERT / MiniLM
        if pad is None:
            raise ModelUnavailableError(f"{model_dir}: tokenizer has neither <pad> nor [PAD]")
        tokenizer.enable_padding(pad_id=pad)
    return tokenizer


def _features(tokenizer: Any, texts: list[str]) -> dict[str, np.ndarray]:
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
    }


def _max_tokens(spec: ModelSpec, model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    native: int | None = (json.loads(config.read_text()).get("max_seq_length")
                          if config.is_file() else None)
    return min(spec.max_tokens, native) if native else spec.max_tokens


def _ffn_output_matmuls(onnx_path: Path) -> list[str]:
    """MatMul nodes whose constant weight is (intermediate, hidden): the FFN output projections.

    Picked by weight shape, not node name, so the rule survives exporter renames.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dims = {init.name: tuple(init.dims) for init in graph.initializer}
    return [
        node.name for node in graph.node
        if node.op_type == "MatMul" and len(node.input) == 2 and len(dims.get(node.input[1],
                                                                              ())) == 2
        and dims[node.input[1]][0] >= 2 * dims[node.input[1]][1]
    ]


def _session(model_file: Path, threads: int) -> Any:
    """An ORT CPU session: one intra-op thread per pool process measured best on 2 cores, and
    no spinning, so an idle worker does not burn the cores its siblings need."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def _export(model_dir: Path, work: Path, max_tokens: int, keep_ffn: bool) -> Any:
    """Write the quantized model into ``work``; return the fp32 torch module for the check."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from transformers import AutoModel

    class MeanPooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.model(input_ids=input_ids,
                                              attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled: torch.Tensor = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return pooled

    pooled = MeanPooled(AutoModel.from_pretrained(str(model_dir)).eval()).eval()
    sample = _features(_tokenizer(model_dir, max_tokens), CHECK_TEXTS[:2])
    fp32, pre = work / "fp32.onnx", work / "pre.onnx"
    # The TorchScript tracer warns about Python-level branches in transformers' masking code;
    # they are constant for these encoders, and `_check` compares the result with fp32 anyway.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled, (torch.from_numpy(sample["input_ids"]),
                     torch.from_numpy(sample["attention_mask"])), str(fp32),
            input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                          "attention_mask": {0: "batch", 1: "seq"},
                          "sentence_embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    onnx.checker.check_model(str(fp32))
    # Symbolic shape inference fails on these graphs (Min(512, seq) broadcasts); ONNX's own
    # shape inference is enough for MatMul/Gather dynamic quantization.
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_dynamic(
        str(pre), str(work / MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True,
        reduce_range=True, op_types_to_quantize=["MatMul", "Gather"],
        nodes_to_exclude=_ffn_output_matmuls(pre) if keep_ffn else [],
    )
    fp32.unlink()
    pre.unlink()
    for name in _TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, work / name)
    return pooled


def _check(pooled: Any, work: Path, max_tokens: int) -> float:
    """Mean cosine of the int8 artefact to the fp32 model on `CHECK_TEXTS`."""
    import torch

    features = _features(_tokenizer(work, max_tokens), CHECK_TEXTS)
    quantized = _session(work / MODEL_FILE, 1).run(None, features)[0]
    with torch.inference_mode():
        reference = pooled(*(torch.from_numpy(features[k])
                             for k in ("input_ids", "attention_mask"))).numpy()
    cosine = (reference * quantized).sum(1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(quantized, axis=1))
    return float(cosine.mean())


def export_int8(spec: ModelSpec, source: ResolvedSource, cache_dir: Path) -> Path:
    """The folder of this model's int8 artefact, exported now unless already cached.

    Keyed by the model's revision and the recipe; built in a temporary folder renamed into place,
    so a crash leaves nothing that looks finished and racing workers keep one result.
    """
    if spec.int8 is None:
        raise ModelUnavailableError(f"model {spec.name!r} has no int8 settings in models.json")
    keep_ffn = spec.int8.keep_ffn_output_fp32
    recipe = f"{RECIPE}{'-keepffn' if keep_ffn else ''}"
    final = cache_dir / "onnx" / f"{spec.name}-{file_safe(source.revision)}-{recipe}"
    if (final / META_FILE).is_file():
        return final
    model_dir = Path(source.location)
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelUnavailableError(
            f"model {spec.name!r}: int8 needs local files with a tokenizer.json, "
            f"{model_dir} has none; fix: point models.json at a local copy or use fp32")
    with building_dir(final, lambda folder: (folder / META_FILE).is_file()) as work:
        max_tokens = _max_tokens(spec, model_dir)
        log.info("int8_export_started", model=spec.name, recipe=recipe, into=str(final))
        cosine = _check(_export(model_dir, work, max_tokens, keep_ffn), work, max_tokens)
        if cosine < MIN_EXPORT_COSINE:
            raise ModelUnavailableError(
                f"model {spec.name!r}: the int8 export reaches mean cosine {cosine:.4f} to fp32, "
                f"below {MIN_EXPORT_COSINE}; this CPU or runtime quantizes it badly; fix: serve "
                "it at fp32 (or auto)")
        meta = {"recipe": recipe, "revision": source.revision, "check_mean_cosine": cosine,
                "check_texts": len(CHECK_TEXTS), "max_tokens": max_tokens}
        (work / META_FILE).write_text(json.dumps(meta, indent=1))
    log.info("int8_exported", model=spec.name, check_mean_cosine=round(cosine, 4))
    return final


class OnnxInt8Encoder:
    """An `export_int8` artefact as a `Encoder`: mean-pooled float32, not normalised."""

    def __init__(self, spec: ModelSpec, source: ResolvedSource, exported: Path,
                 threads: int) -> None:
        meta = json.loads((exported / META_FILE).read_text())
        self.max_tokens = int(meta["max_tokens"])
        self.revision = f"{source.revision}+{meta['recipe']}"
        self.precision = "int8"
        self._session = _session(exported / MODEL_FILE, threads)
        self.weight_bytes = (exported / MODEL_FILE).stat().st_size
        self._encode = _tokenizer(exported, self.max_tokens)
        self._count = _tokenizer(exported, None)
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        if self.dim != spec.dim:
            raise ModelUnavailableError(
                f"model {spec.name!r} gives {self.dim}-d vectors but models.json says "
                f"{spec.dim}; fix models.json")

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts before truncation, special tokens included."""
        return [len(e.ids) for e in self._count.encode_batch(texts)]

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """Tokenise (truncating to max_tokens), one ORT run, float32 pooled vectors."""
        out = self._session.run(None, _features(self._encode, texts))[0]
        return np.ascontiguousarray(out, dtype=np.float32)
