"""`embedq models` and `embedq eval precision` as a user runs them (real models, subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from embedq.config.registry import load_registry
from embedq.worker.models.cpu import read_cpu_features


def _embedq(*args: str, timeout: float = 300) -> str:
    return subprocess.run([sys.executable, "-m", "embedq.cli", *args], check=True,
                          capture_output=True, text=True, timeout=timeout).stdout


def test_models_lists_sources_and_availability():
    rows = {row["model"]: row for row in json.loads(_embedq("models", "--json"))}
    assert set(rows) == {"minilm", "mpnet", "embeddinggemma", "hashing"}
    assert rows["minilm"]["status"] == "available"
    assert rows["mpnet"]["source"] == "split_zip"
    assert "--no-deps" in rows["mpnet"]["origin"]
    assert rows["mpnet"]["status"].startswith("available")
    assert "not available offline" in rows["embeddinggemma"]["status"]


def _runs_here(precision: str) -> bool:
    """Whether a CPU worker serves ``precision`` of MiniLM on this machine, decided from the CPU's
    features as the product decides (`selection._refuse_half`); CUDA is hidden by conftest."""
    cpu = read_cpu_features()
    return {"fp32": True, "int8": True, "bf16": cpu.bf16_units, "fp16": cpu.fp16_units}[precision]


@pytest.mark.model
def test_eval_precision_reports_every_precision_that_runs_here(tmp_path):
    out = tmp_path / "minilm.json"
    text = _embedq("eval", "precision", "-m", "minilm", "--texts", "64", "--pairs", "60",
                   "--threads", "1", "--json", str(out))
    assert "texts_per_s" in text.splitlines()[0]  # the table comes first
    report = json.loads(out.read_text())
    listed = [p.value for p in load_registry().model("minilm").precisions]
    rows = {row["precision"]: row for row in report["rows"]}
    assert report["rows"][0]["precision"] == "fp32"  # the reference comes first
    assert sorted(rows) == sorted(p for p in listed if _runs_here(p))
    assert sorted(report["skipped"]) == sorted(p for p in listed if not _runs_here(p))
    fp32, int8 = rows["fp32"], rows["int8"]
    assert fp32["mean_cosine"] == 1.0
    assert fp32["texts_per_s"] > 0
    assert int8["mean_cosine"] >= 0.98
    assert int8["weight_bytes"] < 0.3 * fp32["weight_bytes"]
    assert int8["rss_mib"] > 0
    assert abs(int8["spearman_drop"]) < 0.02
    for half in ("bf16", "fp16"):
        if half in rows:  # a CPU with the units (AVX-512-BF16, AMX): half the weight bytes
            assert rows[half]["weight_bytes"] <= 0.55 * fp32["weight_bytes"]
            assert rows[half]["mean_cosine"] >= 0.98
            assert abs(rows[half]["spearman_drop"]) < 0.02
        else:  # refused with the measured reason (a GPU host would measure it)
            assert f"no {half} units" in report["skipped"][half]
