"""What `embedq models add` reads from a sentence-transformers folder, on synthetic folders (the
real MiniLM one is in tests/integration/test_models_add.py), and what a pooling the ONNX export
cannot reproduce leaves to PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedq.config.errors import ModelUnavailableError
from embedq.config.registry import ModelSpec, Precision
from embedq.worker.models.cpu import CpuFeatures
from embedq.worker.models.folder import inspect_folder
from embedq.worker.models.selection import allowed_candidates

XEON = CpuFeatures("Intel Xeon", frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_int8"}))

POOLING = "sentence_transformers.models.Pooling"
TRANSFORMER = "sentence_transformers.models.Transformer"


def _folder(root: Path, pooling: dict[str, object], *, tail: tuple[str, ...] = (),
            dense_out: int | None = None, st: dict[str, object] | None = None) -> Path:
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING}]
    for i, kind in enumerate(tail, start=2):
        modules.append({"idx": i, "name": str(i), "path": f"{i}_{kind}",
                        "type": f"sentence_transformers.models.{kind}"})
        (root / f"{i}_{kind}").mkdir(parents=True)
        if kind == "Dense":
            (root / f"{i}_{kind}" / "config.json").write_text(json.dumps(
                {"in_features": 384, "out_features": dense_out}))
    (root / "1_Pooling").mkdir(parents=True)
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "config.json").write_text('{"max_position_embeddings": 512}')
    (root / "tokenizer_config.json").write_text('{"model_max_length": 128}')
    (root / "tokenizer.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"")
    if st is not None:
        (root / "config_sentence_transformers.json").write_text(json.dumps(st))
    return root


def test_mean_pooling_in_the_old_spelling_with_the_limit_of_the_tokenizer(tmp_path):
    facts = inspect_folder(_folder(tmp_path, {"word_embedding_dimension": 384,
                                              "pooling_mode_mean_tokens": True},
                                   tail=("Normalize",), st={"prompts": {"query": "q: "},
                                                            "default_prompt_name": "query"}))
    assert (facts.dim, facts.max_tokens, facts.pooling, facts.onnx_pooling) == (
        384, 128, "mean", "mean")
    assert facts.normalized
    assert (facts.prompts, facts.default_prompt_name) == ({"query": "q: "}, "query")


@pytest.mark.parametrize(("pooling", "tail", "dim", "onnx"), [
    ({"embedding_dimension": 384, "pooling_mode": "cls"}, (), 384, "cls"),
    ({"embedding_dimension": 384, "pooling_mode": "cls"}, ("Dense",), 256, "other"),
    ({"embedding_dimension": 384, "pooling_mode": "max"}, (), 384, "other"),
    ({"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": False}, (), 384,
     "other"),
])
def test_what_the_onnx_export_can_reproduce(tmp_path, pooling, tail, dim, onnx):
    facts = inspect_folder(_folder(tmp_path, pooling, tail=tail, dense_out=256))
    assert (facts.dim, facts.onnx_pooling) == (dim, onnx)


def test_a_bad_folder_is_one_error_naming_every_problem(tmp_path):
    folder = _folder(tmp_path, {"pooling_mode": "mean"},
                     st={"prompts": {"query": "q: "}, "default_prompt_name": "doc"})
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelUnavailableError) as caught:
        inspect_folder(folder)
    message = str(caught.value)
    assert "no tokenizer" in message
    assert "holds no output dimension" in message
    assert "default_prompt_name 'doc' is not one of its prompts" in message


def test_a_pooling_onnx_cannot_reproduce_is_served_by_pytorch_alone():
    spec = ModelSpec.model_validate({"name": "m", "source": {"kind": "path", "path": "/m"},
                                     "dim": 384, "max_tokens": 128, "pooling": "other",
                                     "precisions": ["fp32", "bf16"]})
    assert [str(c) for c in allowed_candidates(spec, Precision.AUTO, "auto", XEON)] == [
        "torch-fp32", "torch-bf16", "autocast-bf16"]
    assert [str(c) for c in allowed_candidates(spec, Precision.FP32, "onnx", XEON)] == [
        "torch-fp32"]
