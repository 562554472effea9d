"""Hardware-aware precision: CPU features, the choice, the cached decision, refusals — on faked
CPUs and faked measurements (no model, no torch)."""

from __future__ import annotations

import json
import math

import pytest

from embedq.config.errors import ConfigError
from embedq.config.registry import Precision, load_registry
from embedq.worker.models.candidates import Candidate
from embedq.worker.models.cpu import CpuFeatures, parse_cpuinfo, threads_per_process
from embedq.worker.models.decision import DecisionFile, choose, quality_miss
from embedq.worker.models.probe import Measurement, sts_sample
from embedq.worker.models.selection import _refuse_half, allowed_candidates

EPYC = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx f16c fma avx2 sha_ni vaes
"""
ZEN4 = """processor\t: 0
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_vbmi2
"""
XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 amx_bf16 \
amx_tile amx_int8 avx512_fp16
processor\t: 1
model name\t: ignored second block
"""


C = Candidate.parse


def row(name: str, speedup: float, cosine: float = 1.0, min_cosine: float | None = None,
        drop: float = 0.0) -> Measurement:
    return Measurement(C(name), 100 * speedup, speedup, 0.85 - drop, drop, cosine,
                       cosine if min_cosine is None else min_cosine)


def failed(name: str, error: str, per_s: float, speedup: float) -> Measurement:
    return Measurement.failed(C(name), error, per_s, speedup)


def table(*rows: Measurement) -> dict[Candidate, Measurement]:
    return {m.candidate: m for m in rows}


def names(*names: str) -> list[Candidate]:
    return [C(n) for n in names]


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
    zen4 = parse_cpuinfo(ZEN4)  # AVX-512 with VNNI and BF16, but no fp16 arithmetic, no AMX
    assert (zen4.bf16_units, zen4.fp16_units, zen4.int8_dot) == (True, False, True)
    assert "avx512_vbmi2" not in zen4.flags  # changes no kernel choice: not in the signature
    assert len({epyc.signature(), zen4.signature(), xeon.signature()}) == 3
    assert len(epyc.signature()) == 16
    assert epyc.signature() == parse_cpuinfo(EPYC + "bogomips\t: 4890\n").signature()


def test_threads_share_the_cores_given_never_more():
    assert threads_per_process(1, override=3) == 3
    assert threads_per_process(10_000) == 1
    assert threads_per_process(1) >= 1


# The two machines of MEASURED.md, as probe tables: AVX2 EPYC and AMX Xeon.
AVX2_TABLE = table(row("torch-fp32", 1.0), row("onnx-fp32", 1.2),
                   row("onnx-int8", 1.8, 0.992, 0.97, 0.001),
                   failed("torch-bf16", "cut: 0.14x torch-fp32", 14, 0.14),
                   failed("torch-fp16", "cut: 0.19x torch-fp32", 19, 0.19))
AMX_TABLE = {**AVX2_TABLE, **table(row("torch-bf16", 1.78, 0.99995, 0.9999),
                                   row("onnx-int8", 2.3, 0.991, 0.97, 0.002),
                                   row("torch-fp16", 2.6, 0.97, 0.9, 0.02))}
ALL = names("torch-fp32", "onnx-fp32", "onnx-int8", "torch-fp16", "torch-bf16")


def test_auto_picks_int8_on_avx2_and_explains():
    chosen, reason = choose(AVX2_TABLE, ALL)
    assert str(chosen) == "onnx-int8"
    assert "1.80x" in reason
    assert "torch-bf16 0.14x (cut" in reason


def test_auto_picks_bf16_where_it_wins_by_measurement_not_by_flags():
    slow_int8 = {**AMX_TABLE, **table(row("onnx-int8", 1.5, 0.991))}
    assert str(choose(slow_int8, ALL)[0]) == "torch-bf16"
    assert str(choose(AMX_TABLE, ALL)[0]) == "onnx-int8"  # int8 faster still, and it holds
    assert "torch-fp16 2.60x (mean cosine 0.9700 < 0.99)" in choose(AMX_TABLE, ALL)[1]


def test_fp32_backend_must_be_equal_not_close():
    close = table(row("torch-fp32", 1.0), row("onnx-fp32", 1.4, 0.9999, min_cosine=0.9995))
    both = names("torch-fp32", "onnx-fp32")
    assert str(choose(close, both)[0]) == "torch-fp32"
    assert "fp32 must be equal" in (quality_miss(close[C("onnx-fp32")]) or "")
    equal = {**close, **table(row("onnx-fp32", 1.4, 1.0, 0.99999))}
    assert str(choose(equal, both)[0]) == "onnx-fp32"


def test_nothing_measured_falls_back_to_torch_fp32():
    assert str(choose({}, names("onnx-int8"))[0]) == "torch-fp32"
    broken = table(row("torch-fp32", 1.0), failed("onnx-int8", "failed: OSError('disk full')",
                                                  0.0, 0.0))
    assert str(choose(broken, names("torch-fp32", "onnx-int8"))[0]) == "torch-fp32"


def test_allowed_candidates_follow_the_request_the_model_and_the_cpu(monkeypatch):
    from embedq.worker.models import openvino_export

    monkeypatch.setattr(openvino_export, "missing_library", lambda precision: None)
    registry = load_registry(None)
    minilm, gemma = registry.model("minilm"), registry.model("embeddinggemma")
    xeon, epyc = parse_cpuinfo(XEON), parse_cpuinfo(EPYC)
    assert allowed_candidates(minilm, Precision.AUTO, "auto", xeon) == names(
        "torch-fp32", "onnx-fp32", "openvino-fp32", "onnx-int8", "openvino-int8", "torch-fp16",
        "torch-bf16", "autocast-bf16", "openvino-bf16")
    # No bf16 units: OpenVINO would run "bf16" in fp32, so it is not a bf16 candidate there.
    assert C("openvino-bf16") not in allowed_candidates(minilm, Precision.AUTO, "auto", epyc)
    assert allowed_candidates(gemma, Precision.AUTO, "torch", xeon) == names(
        "torch-fp32", "torch-bf16", "autocast-bf16", "openvino-bf16")
    assert allowed_candidates(minilm, Precision.FP32, "auto", epyc) == names(
        "torch-fp32", "onnx-fp32", "openvino-fp32")
    assert allowed_candidates(minilm, Precision.FP32, "torch", xeon) == names("torch-fp32")
    assert allowed_candidates(minilm, Precision.INT8, "auto", epyc) == names(
        "onnx-int8", "openvino-int8")


def test_openvino_candidates_are_skipped_with_the_reason_when_their_library_is_absent(
        monkeypatch):
    from embedq.worker.models import openvino_export
    from embedq.worker.models.selection import skipped_candidates

    absent = {"nncf"}  # OpenVINO present, NNCF (needed to quantize) not
    monkeypatch.setattr(openvino_export.importlib.util, "find_spec",
                        lambda name: None if name in absent else object())
    minilm, xeon = load_registry(None).model("minilm"), parse_cpuinfo(XEON)
    assert skipped_candidates(xeon) == {
        C("openvino-int8"): "the 'nncf' package is not installed"}
    assert allowed_candidates(minilm, Precision.INT8, "auto", xeon) == names("onnx-int8")
    absent.add("openvino")
    assert set(skipped_candidates(parse_cpuinfo(EPYC)).values()) == {
        "the 'openvino' package is not installed"}
    assert not [c for c in allowed_candidates(minilm, Precision.AUTO, "auto", xeon)
                if c.runtime.value == "openvino"]


def test_auto_picks_openvino_where_it_measures_fastest_and_holds_the_bar():
    measured = table(row("torch-fp32", 1.0), row("onnx-int8", 2.2, 0.9926),
                     row("openvino-int8", 3.6, 0.9976), row("openvino-bf16", 3.3, 0.99999),
                     row("openvino-fp32", 1.1, 1.0, 0.99995))
    assert str(choose(measured, list(measured))[0]) == "openvino-int8"
    worse = {**measured, C("openvino-int8"): row("openvino-int8", 3.6, 0.985)}
    chosen, reason = choose(worse, list(worse))
    assert str(chosen) == "openvino-bf16"
    assert "openvino-int8 3.60x (mean cosine 0.9850 < 0.99)" in reason
    unequal = table(row("torch-fp32", 1.0), row("openvino-fp32", 1.1, 0.9999, 0.9995))
    assert str(choose(unequal, list(unequal))[0]) == "torch-fp32"  # fp32 must be equal


def test_candidates_are_typed_values_named_by_the_same_strings():
    int8 = C("onnx-int8")
    assert (int8.runtime.value, int8.precision) == ("onnx", Precision.INT8)
    assert str(int8) == "onnx-int8"
    assert f"{int8} wins" == "onnx-int8 wins"
    assert C("torch-bf16") is C("torch-bf16")
    for name in ("onnx-bf16", "torch-int8", "onnx_int8", "int8"):
        with pytest.raises(ConfigError, match=rf"unknown precision candidate '{name}'; known: "
                                              "torch-fp32, onnx-fp32, onnx-int8"):
            C(name)


def test_half_precisions_refused_without_units_with_the_measured_reason():
    spec = load_registry(None).model("minilm")
    with pytest.raises(ConfigError, match=r"no bf16 units and measured 0\.14x PyTorch fp32"):
        _refuse_half(spec, Precision.BF16, parse_cpuinfo(EPYC), lambda: AVX2_TABLE)
    _refuse_half(spec, Precision.BF16, parse_cpuinfo(XEON), lambda: {})  # units: allowed
    _refuse_half(spec, Precision.BF16, parse_cpuinfo(ZEN4), lambda: {})
    with pytest.raises(ConfigError, match=r"no fp16 units and measured 0\.19x PyTorch fp32"):
        _refuse_half(spec, Precision.FP16, parse_cpuinfo(ZEN4), lambda: AVX2_TABLE)
    _refuse_half(spec, Precision.FP16, parse_cpuinfo(XEON), lambda: {})


def test_decision_file_round_trip_and_corruption(tmp_path):
    cpu = CpuFeatures("AMD EPYC", frozenset({"avx2"}))
    file = DecisionFile(tmp_path, "minilm", "pkg==0.1.0", cpu)
    assert file.load() == {}
    file.save(AVX2_TABLE, {"probe_threads": 2})
    loaded = file.load()
    assert loaded[C("onnx-int8")] == AVX2_TABLE[C("onnx-int8")]
    assert math.isnan(loaded[C("torch-bf16")].mean_cosine)  # NaN survives as null
    assert sorted(json.loads(file.path.read_text())["body"]["measured"]) == sorted(
        ["torch-fp32", "onnx-fp32", "onnx-int8", "torch-bf16", "torch-fp16"])  # named as before
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
