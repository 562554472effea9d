"""`embedq models` and `embedq eval precision` as a user runs them (real models, subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


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


@pytest.mark.model
def test_eval_precision_reports_every_precision_that_runs_here(tmp_path):
    out = tmp_path / "minilm.json"
    text = _embedq("eval", "precision", "-m", "minilm", "--texts", "64", "--pairs", "60",
                   "--threads", "1", "--json", str(out))
    assert "texts_per_s" in text.splitlines()[0]  # the table comes first
    report = json.loads(out.read_text())
    fp32, int8 = report["rows"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert fp32["mean_cosine"] == 1.0
    assert int8["mean_cosine"] >= 0.98
    assert int8["weight_bytes"] < 0.3 * fp32["weight_bytes"]
    assert int8["rss_mib"] > 0
    assert fp32["texts_per_s"] > 0
    assert abs(int8["spearman_drop"]) < 0.02
    # No fp16 units on a CPU: refused with the measured reason (a GPU host would measure fp16).
    assert "fp16" in report["skipped"]["fp16"]
    assert "no fp16 units" in report["skipped"]["fp16"] or "CUDA" in report["skipped"]["fp16"]
