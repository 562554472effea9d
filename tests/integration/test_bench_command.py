"""`embedq bench` on a fresh install: generated texts, a private stack, every scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.model
def test_bench_runs_every_scenario_and_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDQ_")}
    run = subprocess.run(
        [sys.executable, "-m", "embedq.cli", "bench", "--texts", "short", "--count", "48",
         "--threads", "8", "--processes", "2", "--json", str(out)],
        env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
        check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = {f["scenario"]: f for f in json.loads(out.read_text())}
    for name in ("short: sequential, embed([t])", "short: 8 threads, embed([t])",
                 "short: 2 processes x 4 threads", "short: 48 concurrent aembed([t])",
                 "short: open loop, 48 submit then get", "short: bulk, embed_many"):
        assert figures[name]["texts"] == 48
        assert figures[name]["ratio_to_raw"] > 0
    assert figures["short: sequential, embed([t])"]["latency_ms"]["p50"] > 0
    hit = figures["short: cache hit, read-through embed([t])"]
    assert hit["note"].startswith(f"{hit['texts']}/{hit['texts']} answered")
    assert "x raw" in run.stdout


def test_bench_of_the_hashing_model_reports_what_the_queue_costs(tmp_path):
    """``-m hashing``: no neural network on either side, the figures are the queue's own."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDQ_")}
    run = subprocess.run(
        [sys.executable, "-m", "embedq.cli", "bench", "-m", "hashing", "--texts", "short",
         "--count", "64", "--scenario", "sequential", "--scenario", "threads", "--json",
         str(out)],
        env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
        check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "raw the hashing encoder in this process" in run.stdout
    figures = {f["scenario"]: f for f in json.loads(out.read_text())}
    for name in ("short: sequential, embed([t])", "short: 16 threads, embed([t])"):
        assert figures[name]["texts"] == 64
        assert figures[name]["redis_commands"] > 0
        assert figures[name]["producer_cpu_us"] > 0
        assert figures[name]["worker_cpu_us"] is not None
    assert figures["raw batch 32, before (short)"]["texts_per_s"] > 0
