"""`embedq eval` through real workers on small fixtures: figures, --compare, --json, saving,
bad input, and a route with nobody serving it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from click.testing import CliRunner

from embedq.cli.main import main
from embedq.config.errors import DataFileError, NoLiveWorkerError
from embedq.config.registry import load_registry
from embedq.ops.evaluation.datasets import read_pairs
from embedq.ops.evaluation.evaluators import sts_evaluator
from embedq.ops.evaluation.metrics import as_float
from embedq.ops.evaluation.results import latest
from embedq.worker.models.hashing_encoder import HashingEncoder
from tests.support import make_client, wait_until

PAIRS = """sentence1,sentence2,score
a red car on the road,a red car on a road,4.8
a red car on the road,the stock market fell,0.2
two dogs play in snow,dogs playing in the snow,4.5
two dogs play in snow,a man reads a book,0.5
the market rallied today,stocks rose today,3.9
a man reads a book,a man is reading,4.2
"""


@pytest.fixture
def env(monkeypatch, redis_server, hashing_config, tmp_path):
    monkeypatch.setenv("EMBEDQ_REDIS_URL", redis_server.url)
    monkeypatch.setenv("EMBEDQ_CONFIG_DIR", str(hashing_config))
    monkeypatch.setenv("EMBEDQ_EVAL_RESULTS_FILE", str(tmp_path / "results.jsonl"))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(PAIRS)
    return pairs


def invoke(*args: str) -> object:
    result = CliRunner().invoke(main, ["eval", *args], catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        return result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if "--json" in args else result.output


def test_a_route_without_a_live_worker_fails_at_once(env):
    started = time.monotonic()
    error = invoke("sts", "--use-case", "fast", "--data", str(env), "--json")
    assert isinstance(error, NoLiveWorkerError)
    assert "embed.hashing.fp32" in str(error)
    assert "embedq worker -m hashing" in str(error)
    assert time.monotonic() - started < 10


def test_bad_file_is_one_clear_error(env, tmp_path):
    (tmp_path / "bad.csv").write_text("sentence1,sentence2,score\na,b,x\n")
    error = invoke("sts", "--data", str(tmp_path / "bad.csv"))
    assert isinstance(error, DataFileError)
    assert "line 2" in str(error)


def test_eval_through_workers_matches_in_process(env, redis_server, hashing_config,
                                                 start_worker):
    start_worker("hashing", "fp32", hashing_config, "-c", "1")
    client = make_client(redis_server.url, hashing_config)
    wait_until(lambda: client.route_status("fast").queue.consumers == 1, timeout=120)

    figures = invoke("sts", "--use-case", "fast", "--data", str(env), "--json")
    registry = load_registry(hashing_config)
    encoder = HashingEncoder(registry.model("hashing"), registry.model("hashing").source)
    evaluator = sts_evaluator(read_pairs(env))
    in_process = evaluator(lambda texts: as_float(encoder.encode_batch(texts), 64))
    assert figures["spearman"] == pytest.approx(in_process["spearman"], abs=1e-6)
    assert figures["pearson"] == pytest.approx(in_process["pearson"], abs=1e-6)
    assert figures["precision"] == "fp32"
    assert figures["texts_per_s"] > 0

    compared = invoke("sts", "--compare", "fast,half", "--data", str(env), "--json")
    assert [r["route"] for r in compared["results"]] == ["fast", "half"]
    table = invoke("sts", "--compare", "fast,half", "--data", str(env))
    assert "spearman" in table
    assert "half" in table

    clustering = invoke("clustering", "--use-case", "fast", "--json")  # the bundled sample
    assert 0.0 <= clustering["v_measure"] <= 1.0
    retrieval = invoke("retrieval", "--use-case", "fast", "--json")
    assert {"ndcg_at_10", "mrr_at_10", "recall_at_100"} <= set(retrieval)

    with redis.Redis.from_url(redis_server.url) as broker:
        saved = {(r["task"], r["route"]) for r in latest(broker)}
    assert {("sts", "fast"), ("sts", "half"), ("clustering", "fast")} <= saved
    lines = Path(env.parent / "results.jsonl").read_text().splitlines()
    assert len(lines) == 7  # sts, twice two compared, clustering, retrieval
    assert np.isfinite(json.loads(lines[0])["spearman"])
