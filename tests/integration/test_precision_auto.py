"""Hardware-aware precision on the real CPU: the optimized fp32 graph equals PyTorch, auto
measures and keeps its decision, failures fall back to PyTorch fp32, corrupt files are rebuilt.

Exports go to the session's model cache (conftest), so each graph is built once per run.
"""

from __future__ import annotations

import numpy as np
import pytest
from structlog.testing import capture_logs

from embedq.config.errors import ConfigError
from embedq.config.registry import Precision, load_registry
from embedq.config.settings import Settings
from embedq.worker.models.cpu import read_cpu_features
from embedq.worker.models.decision import DecisionFile, choose, quality_miss
from embedq.worker.models.fallback import MODEL_FALLBACKS
from embedq.worker.models.loading import check_model, load_encoder
from embedq.worker.models.onnx_encoder import MODEL_FILE, OnnxEncoder
from embedq.worker.models.onnx_export import exported, sha256_file
from embedq.worker.models.selection import allowed_candidates, plan, reset_plans
from embedq.worker.models.sources import resolve_source

pytestmark = pytest.mark.model
TEXTS = ["A man is playing a guitar.", "kids playing football in the park after school",
         "Stocks fell sharply on Monday after the central bank raised interest rates again, "
         "the third rise this year, and bond yields climbed to their highest since 2008.",
         "x", "word " * 600]


@pytest.fixture(autouse=True)
def _fresh_plans():
    reset_plans()
    yield
    reset_plans()


@pytest.mark.parametrize("model", ["minilm", "mpnet"])
def test_optimized_fp32_graph_equals_pytorch(model, model_cache):
    from sentence_transformers import SentenceTransformer

    spec = load_registry().model(model)
    source = resolve_source(spec, model_cache)
    folder = exported(spec, source, model_cache, "fp32")
    encoder = OnnxEncoder(spec, source, folder, threads=1)
    got = encoder.encode_batch(TEXTS)
    want = SentenceTransformer(source.location, device="cpu").encode(TEXTS)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert (encoder.precision, encoder.revision) == ("fp32", source.revision)  # shared cache
    assert encoder.count_tokens(TEXTS)[-1] == 602  # untruncated count


def test_auto_measures_once_on_this_cpu_and_keeps_the_fastest_that_holds(model_cache):
    registry, settings = load_registry(), Settings(fp32_backend="auto", auto_candidates=None)
    spec = registry.model("minilm")
    source = resolve_source(spec, model_cache)
    with capture_logs() as logs:
        chosen = plan(spec, source, Precision.AUTO, settings)
    cpu = read_cpu_features()
    measured = DecisionFile(model_cache, "minilm", source.revision, cpu).load()
    allowed = allowed_candidates(spec, Precision.AUTO, "auto", cpu)
    assert set(measured) == set(allowed)
    assert chosen.candidate == choose(measured, allowed)[0]
    assert quality_miss(measured[chosen.candidate]) is None or str(chosen.candidate) == (
        "torch-fp32")
    decided = next(e for e in logs if e["event"] == "precision_decided")
    assert decided["cpu_signature"] == cpu.signature()
    assert "fastest holding" in decided["reason"]
    reset_plans()
    with capture_logs() as again:  # cached: no probe at the next start on this CPU
        assert plan(spec, source, Precision.AUTO, settings) == chosen
    assert not [e for e in again if e["event"] == "probe_measured"]
    encoder = load_encoder(registry, "minilm", Precision.AUTO, settings)
    assert encoder.precision == chosen.precision.value


def test_a_failed_export_serves_pytorch_fp32_with_a_log_line_and_a_metric(tmp_path):
    (tmp_path / "onnx").write_text("a file where the export folder should be")  # mkdir fails
    settings = Settings(model_cache_dir=tmp_path, fp32_backend="onnx")
    before = MODEL_FALLBACKS.labels(model="minilm", stage="export")._value.get()
    with capture_logs() as logs:
        assert check_model(load_registry(), "minilm", "fp32", settings) is Precision.FP32
    assert [e["wanted"] for e in logs if e["event"] == "model_fallback"] == ["onnx-fp32"]
    assert MODEL_FALLBACKS.labels(model="minilm", stage="export")._value.get() == before + 1
    encoder = load_encoder(load_registry(), "minilm", Precision.FP32, settings)
    assert type(encoder).__name__ == "TorchEncoder"
    assert encoder.precision == "fp32"


def test_a_corrupt_cached_export_is_detected_and_rebuilt(model_cache):
    spec = load_registry().model("minilm")
    source = resolve_source(spec, model_cache)
    folder = exported(spec, source, model_cache, "fp32")
    good = sha256_file(folder / MODEL_FILE)
    with (folder / MODEL_FILE).open("r+b") as handle:  # bit rot in the middle of the weights
        handle.seek(5_000_000)
        handle.write(b"\x00" * 64)
    with capture_logs() as logs:
        assert exported(spec, source, model_cache, "fp32") == folder
    assert [e["event"] for e in logs if "corrupt" in e["event"]] == ["onnx_artefact_corrupt"]
    assert sha256_file(folder / MODEL_FILE) == good


@pytest.mark.parametrize("half", ["bf16", "fp16"])
def test_a_half_precision_is_refused_with_a_measured_reason_unless_the_cpu_has_the_units(half):
    registry, cpu = load_registry(), read_cpu_features()
    if cpu.bf16_units if half == "bf16" else cpu.fp16_units:  # AVX-512-BF16/FP16 or AMX
        assert check_model(registry, "minilm", half, Settings()) is Precision(half)
        return
    with pytest.raises(ConfigError, match=rf"'minilm': {half} on this CPU .* has no {half} units "
                                          r"and (measured \d+\.\d\dx PyTorch fp32|not measurable) "
                                          r"here"):
        check_model(registry, "minilm", half, Settings())


def test_auto_candidates_are_read_by_name_and_a_misspelt_one_is_refused(model_cache):
    registry = load_registry()
    listed = Settings(model_cache_dir=model_cache, auto_candidates=("torch-fp32",))
    assert str(plan(registry.model("minilm"), resolve_source(registry.model("minilm"),
                                                             model_cache),
                    Precision.AUTO, listed).candidate) == "torch-fp32"
    misspelt = Settings(model_cache_dir=model_cache, auto_candidates=("torch-fp32", "onnx_int8"))
    with pytest.raises(ConfigError, match=r"unknown precision candidate 'onnx_int8'; known: "
                                          r"torch-fp32, onnx-fp32, onnx-int8, torch-fp16"):
        check_model(registry, "minilm", "auto", misspelt)


def test_autocast_bf16_keeps_fp32_weights_and_says_bf16(model_cache):
    from sentence_transformers import SentenceTransformer

    from embedq.worker.models.candidates import AUTOCAST_BF16
    from embedq.worker.models.selection import build

    spec = load_registry().model("minilm")
    source = resolve_source(spec, model_cache)
    encoder = build(spec, source, Settings(), AUTOCAST_BF16, 1)
    got = encoder.encode_batch(TEXTS)
    want = SentenceTransformer(source.location, device="cpu").encode(TEXTS)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.999, cosine  # bf16 matmuls, fp32 weights and accumulation
    assert encoder.precision == "bf16"
    assert encoder.weight_bytes > 80e6  # the weights stayed fp32 (22.7 M parameters)
