"""A corpus job killed with SIGKILL at each point between two durable writes, then run again by
the same command: the rerun must end with exactly the files of an uninterrupted run (output,
ids, errors file), no parts and no temporary files left, and a job already complete must be a
no-op that says so.

The job kills itself at a named point (`embedq.producer.corpus.killpoints`), so "after the last
part and before the merge" or "half way through writing the output" is hit every time. The
corpus is JSON lines with bad rows in the middle and at the end, on the hashing model without a
vector cache, so two runs must agree exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embedq.producer.corpus import embed_file
from embedq.producer.corpus.killpoints import POINTS, VARIABLE
from tests.integration.corpus_helpers import durable_end, read_vectors
from tests.support import make_client, wait_for_consumers, worker_env

GOOD = 256  # eight chunks of 32: the last part with a good row ends before the bad tail
BAD_INSIDE = {10: '{"id": 1010, "text": ""}', 70: "{broken", 71: '{"id": 1071}',
              200: '{"id": 1200, "text": 5}'}
BAD_TAIL = ['{"id": 2000, "text": "   "}', '{"id": 2001}', "[1, 2]", '{"id": 2003, "text": ""}']
ROWS = GOOD + len(BAD_INSIDE) + len(BAD_TAIL)
OPTIONS = ["-u", "fast", "--id-field", "id", "--chunk-size", "32", "--window", "64"]


def _lines() -> list[str]:
    lines, good = [], 0
    for offset in range(GOOD + len(BAD_INSIDE)):
        if offset in BAD_INSIDE:
            lines.append(BAD_INSIDE[offset])
        else:
            lines.append(json.dumps({"id": 1000 + offset, "text": f"row {offset}, text {good}"}))
            good += 1
    return lines + BAD_TAIL


def _part_end(good_rows: int) -> int:
    """Where the part that holds the first ``good_rows`` good rows ends: each chunk of 32 good
    rows is one part (window 64: one chunk in flight, commits of 32)."""
    seen = 0
    for offset in range(ROWS):
        if offset not in BAD_INSIDE:
            seen += 1
            if seen == good_rows:
                return offset + 1
    raise AssertionError(good_rows)


@pytest.fixture(scope="module")
def env(redis_server, hashing_config, start_worker):
    """The environment of an ``embedq embed`` process, once a hashing worker serves it."""
    start_worker("hashing", "fp32", hashing_config, "-c", "1", EMBEDQ_CACHE_ENABLED="false")
    wait_for_consumers(redis_server.url, "embed.hashing.fp32")
    return worker_env(redis_server.url, hashing_config, EMBEDQ_CACHE_ENABLED="false")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, redis_server, hashing_config, env):
    """The input, and the files of one uninterrupted run into each output format."""
    folder = tmp_path_factory.mktemp("corpus")
    source = folder / "in.jsonl"
    source.write_text("\n".join(_lines()) + "\n")
    client = make_client(redis_server.url, hashing_config, cache_enabled=False)
    try:
        for name in ("clean.parquet", "clean.npy"):
            summary = embed_file(source, folder / name, "fast", id_field="id", client=client)
            assert (summary.embedded, summary.failed) == (GOOD, ROWS - GOOD)
    finally:
        client.close()
    return source


def _cli(env: dict[str, str], source: Path, out: Path,
         kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = {VARIABLE: kill_at} if kill_at else {}
    return subprocess.run(
        [sys.executable, "-m", "embedq.cli", "embed", *OPTIONS, "--input", str(source),
         "--output", str(out)],
        env={**env, **extra}, capture_output=True, text=True, timeout=300, check=False)


def _files(out: Path) -> tuple[list[object], np.ndarray, list[dict[str, object]]]:
    """Ids, vectors and failed rows of a finished job, in either output format."""
    if out.suffix == ".parquet":
        ids, vectors = read_vectors(out)
    else:
        ids = [json.loads(line) for line in Path(f"{out}.ids.jsonl").read_text().splitlines()]
        vectors = np.load(out)
    errors = [json.loads(line) for line in Path(f"{out}.errors.jsonl").read_text().splitlines()]
    return ids, vectors, errors


def _state(out: Path) -> str:
    return str(json.loads((out.parent / f"{out.name}.embedq" / "job.json").read_text())["state"])


def _temporary_files(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.tmp"))


def _assert_killed_at(point: str, out: Path) -> None:
    """The files on disk are what a kill at ``point`` leaves (so the test tests that point)."""
    parts = out.parent / f"{out.name}.embedq" / "parts"
    errors = Path(f"{out}.errors.jsonl")
    if point == "before-parts":
        assert (_state(out), durable_end(out), out.exists()) == ("running", 0, False)
    elif point.startswith("after-part-"):
        assert durable_end(out) == int(point.removeprefix("after-part-")) < ROWS
        assert not out.exists()
    elif point in ("before-merge", "merge-partial"):
        assert (durable_end(out), out.exists()) == (ROWS, False)
        assert bool(_temporary_files(out.parent)) == (point == "merge-partial")
    elif point == "vectors-published":
        assert out.exists()
        assert not Path(f"{out}.ids.jsonl").exists()
    elif point == "output-published":
        assert (_state(out), out.exists(), errors.exists()) == ("running", True, False)
    elif point == "merged":
        assert (_state(out), errors.exists(), durable_end(out)) == ("running", True, ROWS)
    else:
        assert (_state(out), durable_end(out)) == ("complete", ROWS)
    assert point == "before-parts" or parts.exists()


KILLS = ["before-parts", f"after-part-{_part_end(32)}", f"after-part-{_part_end(GOOD)}",
         "before-merge", "merge-partial", "output-published", "merged", "completed"]
CASES = [*((name, point) for name in ("out.parquet", "out.npy") for point in KILLS),
         ("out.npy", "vectors-published")]  # between the .npy and its ids file


@pytest.mark.parametrize(("name", "point"), CASES)
def test_a_job_killed_at_each_point_is_finished_by_the_same_command(env, corpus, tmp_path,
                                                                    name, point):
    assert point.startswith(POINTS)
    out = tmp_path / name
    killed = _cli(env, corpus, out, kill_at=point)
    assert killed.returncode == -9, killed.stderr
    _assert_killed_at(point, out)
    rerun = _cli(env, corpus, out)
    assert rerun.returncode == 0, rerun.stderr
    said = rerun.stderr.strip().splitlines()[-1]
    assert f"{GOOD:,} of {ROWS:,} rows embedded, {ROWS - GOOD} failed" in said
    assert said.startswith("already complete: ") == (point == "completed")
    if point in ("before-merge", "merge-partial", "vectors-published", "output-published",
                 "merged"):
        assert "every row was durable already: merged" in said
    ids, vectors, errors = _files(out)
    clean_ids, clean_vectors, clean_errors = _files(corpus.parent / f"clean{out.suffix}")
    assert ids == clean_ids == [1000 + i for i in range(GOOD + len(BAD_INSIDE))
                                if i not in BAD_INSIDE]
    np.testing.assert_array_equal(vectors, clean_vectors)
    assert errors == clean_errors
    assert [e["row"] for e in errors] == [*(r + 1 for r in BAD_INSIDE),
                                          *range(GOOD + len(BAD_INSIDE) + 1, ROWS + 1)]
    assert _state(out) == "complete"
    assert not (tmp_path / f"{name}.embedq" / "parts").exists(), "the parts outlive the job"
    assert not _temporary_files(tmp_path), "a temporary file outlives the job"
    again = _cli(env, corpus, out)
    assert again.returncode == 0, again.stderr
    said = again.stderr.strip().splitlines()[-1]
    assert said.startswith(f"already complete: {GOOD:,} of {ROWS:,} rows embedded")
    assert "resumed" not in said
    assert "merged" not in said


@pytest.fixture
def client(redis_server, hashing_config, env):
    made = make_client(redis_server.url, hashing_config, cache_enabled=False)
    yield made
    made.close()


@pytest.mark.parametrize("lines", [[], BAD_TAIL], ids=["empty", "every-row-bad"])
def test_a_job_with_no_text_to_send_still_makes_its_files(client, tmp_path, lines):
    """The same end as a rerun after the last part: nothing to send is not an error."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f"{line}\n" for line in lines))
    out = tmp_path / "out.parquet"
    summary = embed_file(source, out, "fast", id_field="id", client=client)
    assert (summary.rows, summary.embedded, summary.failed) == (len(lines), 0, len(lines))
    assert pq.read_table(out).num_rows == 0
    assert Path(f"{out}.errors.jsonl").exists() == bool(lines)


def test_only_this_jobs_unfinished_files_are_removed(client, corpus, tmp_path):
    """``x.parquet.npy`` is another job, with its own lock: its half-written output next to
    ``x.parquet`` must survive the start of ``x.parquet``'s job."""
    out = tmp_path / "x.parquet"
    mine = [tmp_path / ".x.parquet.k3j_x9a0.tmp", tmp_path / "errs" / ".e.jsonl.0abcdefg.tmp",
            tmp_path / "x.parquet.embedq" / ".job.json.q1w2e3r4.tmp"]
    theirs = [tmp_path / ".x.parquet.npy.a1b2c3d4.tmp", tmp_path / ".x.parquet.npy.ids.jsonl"
              ".a1b2c3d4.tmp"]
    for path in [*mine, *theirs]:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
    embed_file(corpus, out, "fast", id_field="id", client=client,
               errors_file=tmp_path / "errs" / "e.jsonl")
    assert [path.exists() for path in theirs] == [True, True]
    assert [path.exists() for path in mine] == [False, False, False]


def test_parts_without_a_job_record_are_never_resumed(client, corpus, tmp_path):
    """A kill during ``--restart`` removes the record first, then the parts: what is left of
    them belongs to no job that can be checked, here one of another route (32 float16 dims)."""
    out = tmp_path / "out.parquet"

    def stop(progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_file(corpus, out, "half", id_field="id", client=client, chunk_size=32, window=64,
                   on_progress=stop)
    assert durable_end(out) > 0
    (tmp_path / "out.parquet.embedq" / "job.json").unlink()
    summary = embed_file(corpus, out, "fast", id_field="id", client=client)
    assert (summary.resumed_from, summary.embedded) == (0, GOOD)
    ids, vectors = read_vectors(out)
    clean_ids, clean_vectors = read_vectors(corpus.parent / "clean.parquet")
    assert ids == clean_ids
    np.testing.assert_array_equal(vectors, clean_vectors)
