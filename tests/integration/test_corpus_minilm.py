"""Corpus jobs on the real MiniLM model: killed with SIGKILL mid-job, or after every row was
durable and before the merge, then run again by the same command, they end with every id once
and the vectors of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedq.producer.corpus import embed_file
from embedq.producer.corpus.killpoints import VARIABLE
from tests.integration.corpus_helpers import durable_end, paused, read_vectors
from tests.support import WorkerProcess, make_client, wait_until, worker_env

ROWS = 400


@pytest.fixture(scope="module")
def minilm(redis_server, start_worker, tmp_path_factory):
    """A MiniLM worker, the input, the output of an uninterrupted run, and the environment of an
    ``embedq embed`` process."""
    worker = start_worker("minilm", "fp32", None, "-c", "2", EMBEDQ_CACHE_ENABLED="false")
    texts = [f"Sentence {i}: the shop sells {i % 13} kinds of running shoes in town {i % 7}."
             for i in range(ROWS)]
    source = tmp_path_factory.mktemp("minilm") / "in.parquet"
    pq.write_table(pa.table({"sku": [f"sku-{i}" for i in range(ROWS)], "text": texts}), source,
                   row_group_size=100)
    client = make_client(redis_server.url, None, cache_enabled=False)
    try:
        clean = embed_file(source, source.parent / "clean.parquet", "search", id_field="sku",
                           client=client, timeout=300)
    finally:
        client.close()
    assert (clean.model, clean.embedded) == ("minilm", ROWS)
    env = {**worker_env(redis_server.url, None, EMBEDQ_CACHE_ENABLED="false"),
           "EMBEDQ_LOG_LEVEL": "DEBUG"}
    return worker, source, env


def _args(source: Path, out: Path) -> list[str]:
    return ["-u", "search", "--input", str(source), "--id-field", "sku", "--output", str(out),
            "--chunk-size", "16", "--window", "64"]


def _embed(env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embedq.cli", "embed", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.model
def test_minilm_job_killed_and_resumed_matches_a_clean_run(minilm, tmp_path):
    worker, source, env = minilm
    out = tmp_path / "out.parquet"
    job = WorkerProcess([sys.executable, "-m", "embedq.cli", "embed", *_args(source, out)], env)
    wait_until(lambda: durable_end(out) > 0, timeout=120)  # its first commit is durable
    with paused(worker):
        job.process.send_signal(signal.SIGKILL)
        job.process.wait(timeout=60)
    assert 0 < durable_end(out) < ROWS
    run = _embed(env, _args(source, out))
    assert run.returncode == 0, run.stderr
    ids, vectors = read_vectors(out)
    clean_ids, clean_vectors = read_vectors(source.parent / "clean.parquet")
    assert ids == clean_ids == [f"sku-{i}" for i in range(ROWS)]
    # Batches are cut differently in the two runs; padding moves the last float bits only.
    np.testing.assert_allclose(vectors, clean_vectors, atol=1e-5)
    assert vectors.shape == (ROWS, 384)


@pytest.mark.model
def test_minilm_job_killed_before_its_merge_is_merged_by_the_rerun(minilm, tmp_path):
    _, source, env = minilm
    out = tmp_path / "out.npy"
    killed = _embed({**env, VARIABLE: "before-merge"}, _args(source, out))
    assert killed.returncode == -9, killed.stderr
    assert (durable_end(out), out.exists()) == (ROWS, False)
    run = _embed(env, _args(source, out))
    assert run.returncode == 0, run.stderr
    assert f"{ROWS} of {ROWS} rows embedded" in run.stderr
    assert "every row was durable already: merged" in run.stderr
    ids = [json.loads(line) for line in Path(f"{out}.ids.jsonl").read_text().splitlines()]
    clean_ids, clean_vectors = read_vectors(source.parent / "clean.parquet")
    assert ids == clean_ids
    np.testing.assert_allclose(np.load(out), clean_vectors, atol=1e-5)
