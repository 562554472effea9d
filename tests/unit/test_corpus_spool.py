"""The durable side of a corpus job without Redis: the ledger keeps input order, the spool's
file names are its progress, the checkpoint refuses another job, the final files are exact."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from embedq.config.errors import CheckpointMismatchError, OutputFileError
from embedq.producer.corpus.checkpoint import Checkpoint, Identity, check_same_job
from embedq.producer.corpus.fingerprint import fingerprint
from embedq.producer.corpus.ledger import Ledger
from embedq.producer.corpus.progress import JobProgress, ProgressDisplay, ProgressMeter
from embedq.producer.corpus.spool import Spool
from embedq.producer.corpus.writers import write_errors, write_npy, write_parquet
from embedq.producer.jobs import Embeddings

WIDTH = 4


def _block(values, *, errors=None, revision="r1", cached=False):
    n = len(values)
    vectors = np.array([[v] * WIDTH for v in values], dtype=np.float32)
    return Embeddings(vectors, ["m"] * n, [revision] * n, ["fp32"] * n, [cached] * n,
                      [v == 2 for v in values], [3] * n, errors or {})


def _ledger(start=0, model=None):
    return Ledger(start, "str", WIDTH, np.dtype(np.float32), model)


def test_parts_cover_resolved_rows_in_order_with_failures_beside_them():
    ledger = _ledger()
    ledger.submitted(0, "a")
    ledger.rejected(1, "b", "text is empty or only whitespace")
    ledger.submitted(2, "c")
    ledger.submitted(3, "d")
    ledger.rejected(4, "e", "line is empty")
    assert (ledger.frontier, ledger.ready) == (0, 0)
    ledger.resolve(_block([1, 2], errors={1: "worker said no"}))  # rows 0 and 2
    assert (ledger.frontier, ledger.in_flight) == (3, 1)
    part = ledger.take_part()
    assert (part.start, part.end, list(part.ids)) == (0, 3, ["a"])
    assert list(part.err_rows) == [1, 2]
    assert [json.loads(i) for i in part.err_ids] == ["b", "c"]
    assert list(part.err_reasons) == ["text is empty or only whitespace", "worker said no"]
    ledger.resolve(_block([3], cached=True))
    part = ledger.take_part()
    assert (part.start, part.end, list(part.ids), part.cached) == (3, 5, ["d"], 1)
    assert list(part.err_rows) == [4]
    assert ledger.take_part() is None


def test_a_block_from_another_revision_is_refused_and_changes_nothing():
    ledger = _ledger(start=10, model=("m", "r1"))
    ledger.submitted(10, "a")
    with pytest.raises(CheckpointMismatchError,
                       match="row 11 was embedded by m revision r2, but this job's rows so far "
                             "by m revision r1"):
        ledger.resolve(_block([1], revision="r2"))
    assert (ledger.in_flight, ledger.ready) == (1, 0)


def _spool_with_parts(tmp_path):
    spool = Spool(tmp_path / "parts")
    assert spool.open() == 0
    ledger = _ledger()
    for offset, row_id in enumerate(["a", "b", "c"]):
        ledger.submitted(offset, row_id)
    ledger.resolve(_block([1, 2]))
    spool.commit(ledger.take_part())
    ledger.rejected(3, "d", "text is a int; expected a string")
    ledger.resolve(_block([3]))
    spool.commit(ledger.take_part())
    return spool


def test_the_spool_resumes_at_its_last_part_and_drops_half_written_ones(tmp_path):
    spool = _spool_with_parts(tmp_path)
    (spool.folder / ".part-000000000004-000000000009.npz.123.tmp").write_bytes(b"half")
    assert Spool(spool.folder).open() == 4
    assert not list(spool.folder.glob("*.tmp"))
    assert spool.model() == ("m", "r1")
    (spool.folder / "part-000000000000-000000000002.npz").unlink()
    with pytest.raises(CheckpointMismatchError, match="damaged: rows 0 to 2 are missing"):
        Spool(spool.folder).open()


def test_parquet_output_has_ids_vectors_and_facts_in_input_order(tmp_path):
    spool = _spool_with_parts(tmp_path)
    out = tmp_path / "v.parquet"
    write_parquet(spool, out, id_type="str", width=WIDTH, dtype=np.dtype(np.float32),
                  metadata={"use_case": "fast"})
    table = pq.read_table(out)
    assert table.column_names == ["id", "embedding", "model", "revision", "precision",
                                  "truncated"]
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[4]"
    assert table.column("id").to_pylist() == ["a", "b", "c"]
    assert np.stack(table.column("embedding").to_numpy(zero_copy_only=False))[:, 0].tolist() == [
        1, 2, 3]
    assert table.column("truncated").to_pylist() == [False, True, False]
    assert set(table.column("revision").to_pylist()) == {"r1"}
    assert json.loads(pq.read_schema(out).metadata[b"embedq"]) == {"use_case": "fast"}
    errors = tmp_path / "v.errors.jsonl"
    assert write_errors(spool, errors) == 1
    assert [json.loads(line) for line in errors.read_text().splitlines()] == [
        {"row": 4, "id": "d", "reason": "text is a int; expected a string"}]


def test_npy_output_with_ids_beside_it_and_an_empty_job(tmp_path):
    spool = _spool_with_parts(tmp_path)
    write_npy(spool, tmp_path / "v.npy", tmp_path / "v.ids.jsonl", width=WIDTH,
              dtype=np.dtype(np.float32))
    assert np.load(tmp_path / "v.npy")[:, 0].tolist() == [1, 2, 3]
    assert (tmp_path / "v.ids.jsonl").read_text().splitlines() == ['"a"', '"b"', '"c"']
    empty = Spool(tmp_path / "none")
    empty.open()
    write_parquet(empty, tmp_path / "e.parquet", id_type="int", width=WIDTH,
                  dtype=np.dtype(np.float16), metadata={})
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 0
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: halffloat>[4]"
    assert write_errors(empty, tmp_path / "e.errors.jsonl") == 0
    write_npy(empty, tmp_path / "e.npy", tmp_path / "e.ids.jsonl", width=WIDTH,
              dtype=np.dtype(np.int8))
    assert np.load(tmp_path / "e.npy").shape == (0, WIDTH)


def test_one_writer_per_output_and_a_missing_folder_is_refused(tmp_path):
    first = Checkpoint(tmp_path / "v.parquet")
    first.lock()
    with pytest.raises(OutputFileError, match=r"another embedq job .* is writing"):
        Checkpoint(tmp_path / "v.parquet").lock()
    first.release()
    Checkpoint(tmp_path / "v.parquet").lock()
    with pytest.raises(OutputFileError, match=r"its folder .* does not exist"):
        Checkpoint(tmp_path / "no" / "v.parquet").lock()


def test_a_checkpoint_of_another_job_is_refused_naming_what_changed(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a\n")
    checkpoint = Checkpoint(tmp_path / "v.parquet")
    checkpoint.lock()
    identity = Identity({"path": str(source), "format": "txt"}, {"dim": 64, "model": "m"},
                        {"text_field": None})
    checkpoint.start(identity, fingerprint(source))
    record = checkpoint.read()
    assert check_same_job(record, identity, fingerprint(source), checkpoint.output) == []
    changed = Identity(identity.input, {"dim": 32, "model": "m"}, identity.options)
    with pytest.raises(CheckpointMismatchError, match=r"the route changed \(dim 64 -> 32\)"):
        check_same_job(record, changed, fingerprint(source), checkpoint.output)
    source.write_text("a\nb\n")
    with pytest.raises(CheckpointMismatchError, match=r"the input changed .*--restart"):
        check_same_job(record, identity, fingerprint(source), checkpoint.output)


def test_progress_has_a_moving_rate_and_an_eta_by_rows_or_bytes():
    now = [0.0]
    meter = ProgressMeter(rows_total=1000, bytes_total=0, clock=lambda: now[0])
    assert meter.snapshot(0, 0, 0, 0).eta_s is None
    now[0] = 10.0
    progress = meter.snapshot(100, 0, 3, 0)
    assert (progress.rows_per_s, progress.eta_s, progress.fraction) == (10.0, 90.0, 0.1)
    by_bytes = ProgressMeter(rows_total=None, bytes_total=4000, clock=lambda: now[0])
    by_bytes.snapshot(0, 0, 0, 0)
    now[0] = 20.0
    assert by_bytes.snapshot(50, 1000, 0, 0).eta_s == 30.0


def test_progress_shows_as_a_bar_or_as_log_lines_or_not_at_all(capsys):
    snapshot = JobProgress(rows=500, rows_total=1000, bytes_read=0, bytes_total=0, failed=2,
                           cached=0, rows_per_s=50.0, eta_s=10.0)
    bar = ProgressDisplay(True)
    bar(snapshot)
    bar.close()
    assert "500/1.00k" in capsys.readouterr().err
    with capture_logs() as logs:
        ProgressDisplay(None, interval_s=0)(snapshot)  # stderr is no terminal under pytest
        ProgressDisplay(False)(snapshot)
    assert logs == [{"event": "corpus progress", "log_level": "info", "rows": 500,
                     "rows_total": 1000, "percent": 50.0, "failed": 2, "rows_per_s": 50.0,
                     "eta_s": 10}]
