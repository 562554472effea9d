"""ONNX artefacts of a model, built once per model revision in the worker's parent: an
optimized fp32 graph equal to PyTorch, and an int8 graph quantized from it.

* fp32: transformer + mean pooling exported with ``torch.onnx.export`` (TorchScript exporter,
  opset 17, eager attention: the pattern ONNX Runtime's fusions recognise; no optimum, whose
  pins conflict with sentence-transformers 6), then fused (`onnx_fusion`). It is accepted only
  if every check text's cosine to PyTorch is at least `FP32_MIN_COSINE`.
* int8: ``quantize_dynamic`` of the fused graph: QInt8 per-channel weights on MatMul and the
  fused Attention (QAttention), ``reduce_range=True`` (without it AVX2's u8s8 kernels can
  saturate), and the node kinds the registry names (``int8.keep_fp32``, chosen by measured loss)
  left in fp32. Accepted if its mean cosine reaches `INT8_MIN_EXPORT_COSINE`; whether a worker
  *serves* it is decided per CPU by the probe.

Each variant lives in its own folder under ``<cache>/onnx/<model>-<revision>-<recipe>/``, built
in a temporary folder renamed into place (a crash leaves nothing that looks finished; racing
workers keep one result), with the sha256 of its model file in ``meta.json``: a corrupt file is
detected when the parent opens it and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from embedq.config.errors import ModelUnavailableError
from embedq.config.registry import ModelSpec
from embedq.worker.models.folder import native_max_tokens
from embedq.worker.models.onnx_encoder import (
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILES,
    features,
    session,
    tokenizer,
)
from embedq.worker.models.quantize import SEED_TEXTS
from embedq.worker.models.sources import ResolvedSource, file_safe

log = structlog.get_logger(__name__)

RECIPE = "ort132-fused-v3"
INT8_RECIPE = "qint8-pc-rr-emb"
FP32_MIN_COSINE = 0.9999
INT8_MIN_EXPORT_COSINE = 0.98
#: Short and long texts, and one past every model's max_tokens (truncation in the graph).
CHECK_TEXTS = [*SEED_TEXTS, " ".join(SEED_TEXTS), "word " * 600]


def _max_tokens(spec: ModelSpec, model_dir: Path) -> int:
    native = native_max_tokens(model_dir)
    return min(spec.max_tokens, native) if native else spec.max_tokens


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def pooled_torch(model_dir: Path, pooling: str = "mean") -> Any:
    """The fp32 transformer with mean (or CLS) pooling, as one torch module (eager attention)."""
    import torch
    from transformers import AutoModel

    class MeanPooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.model(input_ids=input_ids,
                                              attention_mask=attention_mask).last_hidden_state
            if pooling == "cls":  # a constant for the tracer: one branch is exported
                return hidden[:, 0]
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled: torch.Tensor = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return pooled

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    return MeanPooled(model).eval()


Run = Callable[[dict[str, np.ndarray]], np.ndarray]


def _cosines(pooled: Any, run: Run, work: Path, max_tokens: int) -> np.ndarray:
    """Per check text, the cosine of the exported model's vector (``run``) to PyTorch's."""
    import torch

    inputs = features(tokenizer(work, max_tokens), CHECK_TEXTS)
    got = run(inputs)
    with torch.inference_mode():
        want = pooled(*(torch.from_numpy(inputs[k]) for k in ("input_ids", "attention_mask")))
    want = want.numpy()
    cosines: np.ndarray = (want * got).sum(1) / (
        np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
    return cosines


def export_raw(pooled: Any, model_dir: Path, target: Path, max_tokens: int) -> None:
    """``torch.onnx.export`` of the pooled module to ``target``: the unfused graph."""
    import torch

    sample = features(tokenizer(model_dir, max_tokens), CHECK_TEXTS[:2])
    # The tracer warns about Python-level branches in transformers' masking code; they are
    # constant for these encoders, and the result is compared with PyTorch anyway.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pooled, (torch.from_numpy(sample["input_ids"]),
                     torch.from_numpy(sample["attention_mask"])), str(target),
            input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                          "attention_mask": {0: "batch", 1: "seq"},
                          "sentence_embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )


def export_fp32(model_dir: Path, work: Path, max_tokens: int, pooling: str, *,
                fuse_biased: bool = True, name: str = MODEL_FILE) -> tuple[Any, dict[str, int]]:
    """Export, fuse and write ``work/name``; the torch module and the fusion counts."""
    from embedq.worker.models.onnx_fusion import optimize

    pooled = pooled_torch(model_dir, pooling)
    config = pooled.model.config
    raw = work / "raw.onnx"
    export_raw(pooled, model_dir, raw, max_tokens)
    counts = optimize(str(raw), str(work / name), config.num_attention_heads,
                      config.hidden_size, fuse_biased=fuse_biased)
    raw.unlink()
    return pooled, counts


def classify_matmuls(model_file: Path) -> dict[str, str]:
    """Quantizable node name -> kind (``qkv``, ``attn_out``, ``ffn_in``, ``ffn_out``) and layer,
    as ``"ffn_out:3"``; picked by weight shape and order, so exporter renames do not matter."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    dims = {init.name: tuple(init.dims) for init in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for node in graph.node:
        shape = dims.get(node.input[1], ()) if len(node.input) > 1 else ()
        if node.op_type == "Attention":
            kind = "qkv"
        elif node.op_type == "MatMul" and len(shape) == 2:
            rows, cols = shape
            kind = "ffn_out" if rows >= 2 * cols else "ffn_in" if cols >= 2 * rows else (
                "qkv" if _splits_heads(node, consumers) else "attn_out")
        else:
            continue
        kinds[node.name] = f"{kind}:{seen.get(kind, 0)}"
        seen[kind] = seen.get(kind, 0) + 1
    return kinds


def _splits_heads(node: Any, consumers: dict[str, list[Any]]) -> bool:
    """True for an unfused Q, K or V projection: MatMul, bias Add, then the Reshape into heads
    (an attention output projection goes on to the residual Add instead)."""
    after = consumers.get(node.output[0], [])
    if len(after) == 1 and after[0].op_type == "Add":
        after = consumers.get(after[0].output[0], [])
    return any(child.op_type == "Reshape" for child in after)


def _kept_fp32(kinds: dict[str, str], keep: tuple[str, ...]) -> list[str]:
    """Nodes whose kind (``ffn_out``) or kind and layer (``ffn_out:11``) is in ``keep``, and
    every biased Attention (MPNet): QAttention has no attention_bias input, so quantizing it
    would silently drop the relative position bias (measured: mean cosine 0.54)."""
    return [name for name, kind in kinds.items()
            if kind in keep or kind.split(":")[0] in keep or name.startswith("BiasedAttention")]


def quantize_int8(fp32_file: Path, work: Path, keep: tuple[str, ...], *,
                  reduce_range: bool = True) -> None:
    """Write ``work/MODEL_FILE``: the recipe above (``reduce_range`` off only to measure it)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_file), str(work / MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True,
        reduce_range=reduce_range,
        # The embedding tables are a third of a small model: quantized too (EmbedLayerNorm once
        # fused, Gather before), or int8 would barely shrink the file.
        op_types_to_quantize=["MatMul", "Attention", "EmbedLayerNormalization", "Gather"],
        nodes_to_exclude=_kept_fp32(classify_matmuls(fp32_file), keep),
        # Contrib ops (Attention, SkipLayerNormalization) have no ONNX shape inference.
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def artefact_dir(spec: ModelSpec, source: ResolvedSource, cache_dir: Path) -> Path:
    """The folder holding every exported variant of this model revision."""
    return cache_dir / "onnx" / f"{spec.name}-{file_safe(source.revision)}-{RECIPE}"


def _digest(folder: Path, files: tuple[str, ...]) -> str:
    """sha256 of ``files`` (one file: that file's own sha256)."""
    if len(files) == 1:
        return sha256_file(folder / files[0])
    return hashlib.sha256("".join(sha256_file(folder / name) for name in files).encode()
                          ).hexdigest()


def _intact(folder: Path, files: tuple[str, ...]) -> bool:
    """True if ``folder`` holds a finished artefact whose model files match their hash."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        return bool(_digest(folder, files) == meta["sha256"])
    except (OSError, ValueError, KeyError):
        return False


def _finish(work: Path, final: Path, meta: dict[str, Any], files: tuple[str, ...]) -> None:
    meta["sha256"] = _digest(work, files)
    (work / META_FILE).write_text(json.dumps(meta, indent=1))
    try:
        work.rename(final)
    except OSError:  # another process finished first: keep theirs
        if not _intact(final, files):
            raise


#: Builds one variant into a work folder: (model_dir, work, max_tokens) -> (the PyTorch module
#: to check against, meta entries).
Make = Callable[[Path, Path, int], tuple[Any, dict[str, Any]]]


def build_artefact(spec: ModelSpec, source: ResolvedSource, final: Path, variant: str,
                   make: Make, opener: Callable[[Path], Run], files: tuple[str, ...]) -> Path:
    """``final``, built by ``make`` now if missing or corrupt, and accepted only if the graph
    that ``opener`` runs from the work folder reaches the floor on the check texts (fp32: every
    cosine >= `FP32_MIN_COSINE`; int8: the mean >= `INT8_MIN_EXPORT_COSINE`). Raises
    `ModelUnavailableError` when it cannot be built or fails its check."""
    if (final / META_FILE).is_file():
        if _intact(final, files):
            return final
        log.warning("onnx_artefact_corrupt", model=spec.name, folder=str(final),
                    action="rebuilding")
        shutil.rmtree(final, ignore_errors=True)
    model_dir = Path(source.location)
    if spec.pooling == "other":
        raise ModelUnavailableError(
            f"model {spec.name!r}: its pooling (see models.json 'pooling') is not one the ONNX "
            "export reproduces (mean or cls, then at most a Normalize); serve it with PyTorch")
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelUnavailableError(
            f"model {spec.name!r}: ONNX needs local files with a tokenizer.json, {model_dir} "
            "has none; fix: point models.json at a local copy or use the torch backend")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=final.parent))
    work.chmod(0o755)
    try:
        max_tokens = _max_tokens(spec, model_dir)
        log.info("onnx_export_started", model=spec.name, variant=variant, into=str(final))
        for name in TOKENIZER_FILES:  # the check tokenizes from the work folder
            if (model_dir / name).exists():
                shutil.copy2(model_dir / name, work / name)
        pooled, meta = make(model_dir, work, max_tokens)
        cosines = _cosines(pooled, opener(work), work, max_tokens)
        fp32 = variant.endswith("fp32")
        worst = float(cosines.min()) if fp32 else float(cosines.mean())
        floor = FP32_MIN_COSINE if fp32 else INT8_MIN_EXPORT_COSINE
        if worst < floor:
            raise ModelUnavailableError(
                f"model {spec.name!r}: the {variant} export reaches cosine {worst:.5f} to "
                f"PyTorch, below {floor}; fix: serve it with the torch backend")
        meta.update({"recipe": f"{RECIPE}+{final.name}", "revision": source.revision,
                     "variant": variant.rsplit("-", 1)[-1], "max_tokens": max_tokens,
                     "check_min_cosine": float(cosines.min()),
                     "check_mean_cosine": float(cosines.mean())})
        _finish(work, final, meta, files)
        log.info("onnx_exported", model=spec.name, variant=variant,
                 check_min_cosine=round(float(cosines.min()), 5), **meta.get("fusions", {}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _ort(work: Path) -> Run:
    """The work folder's graph on a one-thread ONNX Runtime session."""
    opened = session(work / MODEL_FILE, 1)
    return lambda inputs: opened.run(None, inputs)[0]


def exported(spec: ModelSpec, source: ResolvedSource, cache_dir: Path, variant: str) -> Path:
    """The folder of this model's ``fp32`` or ``int8`` ONNX artefact, built now if missing or
    corrupt (`build_artefact`)."""
    keep = spec.int8.keep_fp32 if spec.int8 else ()
    final = artefact_dir(spec, source, cache_dir) / (
        variant if variant == "fp32" else f"int8-{INT8_RECIPE}" + "".join(
            f"-keep-{kind.replace(':', '')}" for kind in keep))

    def make(model_dir: Path, work: Path, max_tokens: int) -> tuple[Any, dict[str, Any]]:
        if variant == "fp32":
            pooled, counts = export_fp32(model_dir, work, max_tokens, spec.pooling)
            return pooled, {"fusions": dict(counts)}
        fp32_dir = exported(spec, source, cache_dir, "fp32")
        quantize_int8(fp32_dir / MODEL_FILE, work, keep)
        return pooled_torch(model_dir, spec.pooling), {"keep_fp32": list(keep)}

    return build_artefact(spec, source, final, variant, make, _ort, (MODEL_FILE,))
