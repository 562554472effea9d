"""Hardware-aware precision: CPU features, the choice, the cached decision, refusals — on faked
CPUs and faked measurements (no model, no torch)."""

from __future__ import annotations

import json
import math

import pytest

from embedq.config.errors import ConfigError
from embedq.config.registry import Precision, load_registry
from embedq.worker.models.cpu import CpuFeatures, parse_cpuinfo, threads_per_process
from embedq.worker.models.decision import DecisionFile, choose, quality_miss
from embedq.worker.models.probe import Measurement, sts_sample
from embedq.worker.models.selection import _refuse_half, allowed_candidates

EPYC = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx f16c fma avx2 sha_ni vaes
"""
XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 amx_bf16 \
amx_tile amx_int8 avx512_fp16
processor\t: 1
model name\t: ignored second block
"""


def row(name: str, speedup: float, cosine: float = 1.0, min_cosine: float | None = None,
        drop: float = 0.0) -> Measurement:
    return Measurement(name, 100 * speedup, speedup, 0.85 - drop, drop, cosine,
                       cosine if min_cosine is None else min_cosine)


def test_cpuinfo_flags_and_units():
    epyc, xeon = parse_cpuinfo(EPYC), parse_cpuinfo(XEON)
    assert epyc.model_name == "AMD EPYC"
    assert "avx2" in epyc.flags
    assert "sha_ni" not in epyc.flags
    assert not (epyc.bf16_units)
    assert not (epyc.fp16_units)
    assert not (epyc.int8_dot)
    assert xeon.bf16_units
    assert xeon.fp16_units
    assert xeon.int8_dot
    assert xeon.model_name.startswith("Intel(R) Xeon(R) Platinum")
    assert epyc.signature() != xeon.signature()
    assert len(epyc.signature()) == 16
    assert epyc.signature() == parse_cpuinfo(EPYC + "bogomips\t: 4890\n").signature()


def test_threads_share_the_cores_given_never_more():
    assert threads_per_process(1, override=3) == 3
    assert threads_per_process(10_000) == 1
    assert threads_per_process(1) >= 1


# The two machines of MEASURED.md, as probe tables: AVX2 EPYC and AMX Xeon.
AVX2_TABLE = {"torch-fp32": row("torch-fp32", 1.0), "onnx-fp32": row("onnx-fp32", 1.2),
              "onnx-int8": row("onnx-int8", 1.8, 0.992, 0.97, 0.001),
              "torch-bf16": Measurement.failed("torch-bf16", "cut: 0.14x torch-fp32", 14, 0.14),
              "torch-fp16": Measurement.failed("torch-fp16", "cut: 0.19x torch-fp32", 19, 0.19)}
AMX_TABLE = {**AVX2_TABLE, "torch-bf16": row("torch-bf16", 1.78, 0.99995, 0.9999),
             "onnx-int8": row("onnx-int8", 2.3, 0.991, 0.97, 0.002),
             "torch-fp16": row("torch-fp16", 2.6, 0.97, 0.9, 0.02)}
ALL = ["torch-fp32", "onnx-fp32", "onnx-int8", "torch-fp16", "torch-bf16"]


def test_auto_picks_int8_on_avx2_and_explains():
    chosen, reason = choose(AVX2_TABLE, ALL)
    assert chosen == "onnx-int8"
    assert "1.80x" in reason
    assert "torch-bf16 0.14x (cut" in reason


def test_auto_picks_bf16_where_it_wins_by_measurement_not_by_flags():
    table = {**AMX_TABLE, "onnx-int8": row("onnx-int8", 1.5, 0.991)}
    assert choose(table, ALL)[0] == "torch-bf16"
    assert choose(AMX_TABLE, ALL)[0] == "onnx-int8"  # int8 faster still, and it holds
    assert "torch-fp16 2.60x (mean cosine 0.9700 < 0.99)" in choose(AMX_TABLE, ALL)[1]


def test_fp32_backend_must_be_equal_not_close():
    close = {"torch-fp32": row("torch-fp32", 1.0),
             "onnx-fp32": row("onnx-fp32", 1.4, 0.9999, min_cosine=0.9995)}
    assert choose(close, ["torch-fp32", "onnx-fp32"])[0] == "torch-fp32"
    assert "fp32 must be equal" in (quality_miss(close["onnx-fp32"]) or "")
    equal = {**close, "onnx-fp32": row("onnx-fp32", 1.4, 1.0, 0.99999)}
    assert choose(equal, ["torch-fp32", "onnx-fp32"])[0] == "onnx-fp32"


def test_nothing_measured_falls_back_to_torch_fp32():
    assert choose({}, ["onnx-int8"])[0] == "torch-fp32"
    failed = {"torch-fp32": row("torch-fp32", 1.0),
              "onnx-int8": Measurement.failed("onnx-int8", "failed: OSError('disk full')")}
    assert choose(failed, ["torch-fp32", "onnx-int8"])[0] == "torch-fp32"


def test_allowed_candidates_follow_the_request_and_the_model():
    registry = load_registry(None)
    minilm, gemma = registry.model("minilm"), registry.model("embeddinggemma")
    assert allowed_candidates(minilm, Precision.AUTO, "auto") == [
        "torch-fp32", "onnx-fp32", "onnx-int8", "torch-fp16", "torch-bf16", "autocast-bf16"]
    assert allowed_candidates(gemma, Precision.AUTO, "torch") == [
        "torch-fp32", "torch-bf16", "autocast-bf16"]
    assert allowed_candidates(minilm, Precision.FP32, "auto") == ["torch-fp32", "onnx-fp32"]
    assert allowed_candidates(minilm, Precision.FP32, "torch") == ["torch-fp32"]
    assert allowed_candidates(minilm, Precision.INT8, "auto") == ["onnx-int8"]


def test_bf16_refused_without_units_with_the_measured_reason():
    spec = load_registry(None).model("minilm")
    with pytest.raises(ConfigError, match=r"no bf16 units and measured 0\.14x PyTorch fp32"):
        _refuse_half(spec, Precision.BF16, parse_cpuinfo(EPYC), lambda: AVX2_TABLE)
    _refuse_half(spec, Precision.BF16, parse_cpuinfo(XEON), lambda: {})  # units: allowed


def test_decision_file_round_trip_and_corruption(tmp_path):
    cpu = CpuFeatures("AMD EPYC", frozenset({"avx2"}))
    file = DecisionFile(tmp_path, "minilm", "pkg==0.1.0", cpu)
    assert file.load() == {}
    file.save(AVX2_TABLE, {"probe_threads": 2})
    loaded = file.load()
    assert loaded["onnx-int8"] == AVX2_TABLE["onnx-int8"]
    assert math.isnan(loaded["torch-bf16"].mean_cosine)  # NaN survives as null
    document = json.loads(file.path.read_text())
    document["body"]["measured"]["torch-bf16"]["speedup"] = 9.9  # a hand edit or bit rot
    file.path.write_text(json.dumps(document))
    assert file.load() == {}  # detected: measured again, not trusted
    file.path.write_text("{not json")
    assert file.load() == {}
    other = DecisionFile(tmp_path, "minilm", "pkg==0.1.0",
                         CpuFeatures("AMD EPYC", frozenset({"avx2", "avx512_bf16"})))
    assert other.path != file.path  # another CPU signature, another decision


def test_bundled_sts_sample_is_small_and_scored():
    sample = sts_sample()
    assert len(sample.first) == len(sample.second) == len(sample.scores) == 175
    assert sample.scores.min() >= 0
    assert sample.scores.max() <= 5
    assert 250 < len(sample.sentences) <= 350
