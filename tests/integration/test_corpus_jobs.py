"""Corpus jobs end to end on real workers (hashing model, no vector cache, so every vector is
computed and two runs must agree exactly): each input format, bad input, and a producer killed
with SIGKILL, SIGINT or SIGTERM in the middle, then resumed by the same command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embedq.config.errors import CheckpointMismatchError
from embedq.producer.corpus import embed_file
from tests.integration.corpus_helpers import durable_end, paused, read_vectors, write_corpus
from tests.support import WorkerProcess, make_client, wait_until, worker_env


@pytest.fixture(scope="module")
def env(redis_server, hashing_config):
    return worker_env(redis_server.url, hashing_config, EMBEDQ_CACHE_ENABLED="false")


@pytest.fixture(scope="module")
def worker(start_worker, hashing_config):
    return start_worker("hashing", "fp32", hashing_config, "-c", "2",
                        EMBEDQ_CACHE_ENABLED="false")


@pytest.fixture(scope="module")
def client(redis_server, hashing_config, worker):
    return make_client(redis_server.url, hashing_config, cache_enabled=False)


def _texts(count: int) -> list[str]:
    return [f"document {i} about topic {i % 97} and a few more words" for i in range(count)]


def _cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embedq.cli", "embed", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("name", ["in.txt", "in.jsonl", "in.jsonl.gz", "in.csv", "in.csv.gz",
                                  "in.parquet"])
def test_each_input_format_gives_ids_and_the_vectors_of_the_texts(client, tmp_path, name):
    texts = _texts(300)
    given = [f"doc-{i}" for i in range(300)]
    source = write_corpus(tmp_path / name, texts, given)
    fields = {} if name == "in.txt" else {"text_field": "body", "id_field": "doc_id"}
    out = tmp_path / "out.parquet"
    summary = embed_file(source, out, "fast", client=client, chunk_size=32, window=128,
                         **fields)
    ids, vectors = read_vectors(out)
    assert ids == (list(range(1, 301)) if name == "in.txt" else given)
    np.testing.assert_array_equal(vectors, client.embed(texts, "fast", timeout=60))
    assert (summary.rows, summary.embedded, summary.failed) == (300, 300, 0)
    assert (summary.model, summary.revision) == ("hashing", "hashing-v1-seed0")
    assert not (tmp_path / "out.parquet.embedq" / "parts").exists()
    again = embed_file(source, out, "fast", client=client, **fields)
    assert again.already_complete
    assert again.embedded == 300


def test_bad_rows_go_to_the_errors_file_and_the_job_goes_on(client, tmp_path):
    rows = ['{"id": 1, "text": "fine"}', '{"id": 2, "text": ""}', '{"id": 3, "text": 5}',
            "{broken", '{"id": 5}', '{"id": "six", "text": "wrong id"}',
            '{"id": 7, "text": "also fine"}']
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.npy"
    summary = embed_file(source, out, "fast", id_field="id", client=client)
    assert (summary.rows, summary.embedded, summary.failed) == (7, 2, 5)
    assert np.load(out).shape == (2, 64)
    assert (tmp_path / "out.npy.ids.jsonl").read_text().splitlines() == ["1", "7"]
    errors = [json.loads(line) for line in Path(summary.errors_file).read_text().splitlines()]
    assert [(e["row"], e["id"]) for e in errors] == [(2, 2), (3, 3), (4, None), (5, 5),
                                                     (6, "six")]
    assert errors[0]["reason"] == "text is empty or only whitespace"
    assert errors[1]["reason"] == "text is a int; expected a string"
    assert errors[2]["reason"].startswith("line is not valid JSON")
    assert errors[3]["reason"] == "has no field 'text'"
    assert errors[4]["reason"] == "id 'six' is a str; this job's ids are integers"


def test_the_routes_output_dtype_and_dim_reach_the_parquet_file(env, worker, tmp_path):
    source = write_corpus(tmp_path / "in.txt", _texts(50), [])
    run = _cli(env, "-u", "half", "--input", source, "--output", tmp_path / "out.parquet")
    assert run.returncode == 0, run.stderr
    assert "50 of 50 rows embedded" in run.stderr
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert str(schema.field("embedding").type) == "fixed_size_list<element: halffloat>[32]"
    facts = json.loads(schema.metadata[b"embedq"])
    assert (facts["use_case"], facts["dim"], facts["output_dtype"]) == ("half", 32, "float16")


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["--input", "{tmp}/missing.csv", "--output", "{tmp}/o.parquet"],
         "InputFileError: input file '{tmp}/missing.csv' does not exist"),
        ("in.csv", ["--input", "{tmp}/in.csv", "--text-field", "text", "--output",
                    "{tmp}/o.parquet"], "has no column 'text'; it has: 'doc_id', 'body'"),
        ("in.csv", ["--input", "{tmp}/in.csv", "--text-field", "body", "--output",
                    "{tmp}/in.csv/o.parquet"], "OutputFileError: cannot write"),
        ("in.csv", ["--input", "{tmp}/in.csv", "--text-field", "body", "--output",
                    "{tmp}/nowhere/o.parquet"], "does not exist; create it first"),
        ("in.csv old.parquet", ["--input", "{tmp}/in.csv", "--text-field", "body", "--output",
                                "{tmp}/old.parquet"], "exists and has no checkpoint of embedq's"),
        ("in.csv", ["--input", "{tmp}/in.csv", "--output", "{tmp}/o.json"],
         "the output must end in .parquet or .npy"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix_before_any_work(env, tmp_path, setup, args,
                                                               message):
    for name in (setup or "").split():
        write_corpus(tmp_path / name, ["a"], ["1"])
    run = _cli(env, "-u", "fast", *(a.format(tmp=tmp_path) for a in args))
    assert run.returncode == 2
    assert message.format(tmp=tmp_path) in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1
    assert not list(tmp_path.glob("o.*")), "nothing may be written for refused input"


ROWS = 3000


@pytest.fixture
def corpus(tmp_path, client):
    """A Parquet corpus and the output of one uninterrupted run over it."""
    source = write_corpus(tmp_path / "in.parquet", _texts(ROWS), [f"doc-{i}" for i in range(ROWS)])
    embed_file(source, tmp_path / "clean.parquet", "fast", id_field="doc_id", text_field="body",
               client=client)
    return source, read_vectors(tmp_path / "clean.parquet")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_stopped_producer_resumes_to_the_vectors_of_a_clean_run(env, worker, corpus,
                                                                  tmp_path, how):
    source, (clean_ids, clean_vectors) = corpus
    out = tmp_path / "out.parquet"
    args = ["-u", "fast", "--input", source, "--text-field", "body", "--id-field", "doc_id",
            "--output", out, "--chunk-size", "32", "--window", "128"]
    job = WorkerProcess([sys.executable, "-m", "embedq.cli", "embed", *map(str, args)],
                        {**env, "EMBEDQ_LOG_LEVEL": "DEBUG"})
    wait_until(lambda: durable_end(out) > 0, timeout=120)  # its first commit is durable
    with paused(worker):
        job.process.send_signal(how)
        code = job.process.wait(timeout=180)  # a loaded CI machine is slow to wind down
    assert code == (-9 if how == signal.SIGKILL else 130), "".join(job.lines)
    if how != signal.SIGKILL:
        assert "interrupted; the rows done so far are kept" in "".join(job.lines)
    durable = durable_end(out)
    assert 0 < durable < ROWS
    run = _cli(env, *args)
    assert run.returncode == 0, run.stderr
    assert f"resumed at row {durable + 1:,}" in run.stderr
    ids, vectors = read_vectors(out)
    assert ids == clean_ids
    np.testing.assert_array_equal(vectors, clean_vectors)


def _interrupted_job(source: Path, out: Path, client, **options) -> None:
    """A job stopped after its first block, as Ctrl-C would stop it."""
    def stop(progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_file(source, out, "fast", client=client, chunk_size=32, window=64,
                   on_progress=stop, **options)
    assert 0 < durable_end(out) < ROWS


def test_a_changed_input_route_or_model_revision_is_refused(corpus, client, tmp_path):
    source = corpus[0]
    out = tmp_path / "out.parquet"
    options = {"text_field": "body", "id_field": "doc_id"}
    _interrupted_job(source, out, client, **options)
    with pytest.raises(CheckpointMismatchError, match=r"the route changed \(dim 64 -> 32"):
        embed_file(source, out, "half", client=client, **options)
    with pytest.raises(CheckpointMismatchError, match=r"the options changed \(id_field"):
        embed_file(source, out, "fast", client=client, text_field="body")
    part = next((out.parent / "out.parquet.embedq" / "parts").glob("part-*.npz"))
    with np.load(part) as data:
        arrays = dict(data)
    np.savez(part, **{**arrays, "revision": np.str_("hashing-v0")})
    with pytest.raises(CheckpointMismatchError,
                       match="embedded by hashing revision hashing-v1-seed0, but this job's rows "
                             "so far by hashing revision hashing-v0"):
        embed_file(source, out, "fast", client=client, **options)
    pq.write_table(pq.read_table(source).slice(0, ROWS - 1), source)
    with pytest.raises(CheckpointMismatchError, match="the input changed"):
        embed_file(source, out, "fast", client=client, **options)
    summary = embed_file(source, out, "fast", client=client, restart=True, **options)
    assert (summary.resumed_from, summary.embedded) == (0, ROWS - 1)


def test_texts_on_the_command_line_still_print_json(env, worker, tmp_path):
    run = _cli(env, "-u", "fast", "first text", "second text")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["shape"] == [2, 64]
    run = _cli(env, "-u", "fast", "--input", tmp_path / "in.txt")
    assert run.returncode == 2
    assert "--input needs --output" in run.stderr
