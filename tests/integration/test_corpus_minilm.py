"""A corpus job on the real MiniLM model: killed with SIGKILL mid-job, resumed by the same
command, it ends with every id once and the vectors of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedq.producer.corpus import embed_file
from tests.integration.corpus_helpers import durable_end, paused, read_vectors
from tests.support import WorkerProcess, make_client, wait_until, worker_env

ROWS = 400


@pytest.mark.model
def test_minilm_job_killed_and_resumed_matches_a_clean_run(redis_server, start_worker,
                                                          tmp_path):
    worker = start_worker("minilm", "fp32", None, "-c", "2", EMBEDQ_CACHE_ENABLED="false")
    client = make_client(redis_server.url, None, cache_enabled=False)
    texts = [f"Sentence {i}: the shop sells {i % 13} kinds of running shoes in town {i % 7}."
             for i in range(ROWS)]
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"sku": [f"sku-{i}" for i in range(ROWS)], "text": texts}), source,
                   row_group_size=100)
    clean = embed_file(source, tmp_path / "clean.parquet", "search", id_field="sku",
                       client=client, timeout=300)
    assert (clean.model, clean.embedded) == ("minilm", ROWS)
    out = tmp_path / "out.parquet"
    args = ["-u", "search", "--input", str(source), "--id-field", "sku", "--output", str(out),
            "--chunk-size", "16", "--window", "64"]
    env = {**worker_env(redis_server.url, None, EMBEDQ_CACHE_ENABLED="false"),
           "EMBEDQ_LOG_LEVEL": "DEBUG"}
    job = WorkerProcess([sys.executable, "-m", "embedq.cli", "embed", *args], env)
    wait_until(lambda: durable_end(out) > 0, timeout=120)  # its first commit is durable
    with paused(worker):
        job.process.send_signal(signal.SIGKILL)
        job.process.wait(timeout=60)
    assert 0 < durable_end(out) < ROWS
    run = subprocess.run([sys.executable, "-m", "embedq.cli", "embed", *args], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    ids, vectors = read_vectors(out)
    clean_ids, clean_vectors = read_vectors(tmp_path / "clean.parquet")
    assert ids == clean_ids == [f"sku-{i}" for i in range(ROWS)]
    # Batches are cut differently in the two runs; padding moves the last float bits only.
    np.testing.assert_allclose(vectors, clean_vectors, atol=1e-5)
    assert vectors.shape == (ROWS, 384)
