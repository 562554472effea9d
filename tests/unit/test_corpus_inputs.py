"""Corpus inputs: every format streams rows with ids from any offset; whole-file problems are
refused before any work with the fields that are there; one bad row stays one bad row."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa  # the files extra; .ci/run installs it
import pyarrow.parquet as pq
import pytest

from embedq.config.errors import InputFileError, MissingExtraError
from embedq.producer.corpus.fingerprint import changes, fingerprint
from embedq.producer.corpus.formats import input_spec, open_source


def _rows(path, *, text_field=None, id_field=None, fmt=None, start=0, batch_rows=3):
    source = open_source(input_spec(path, fmt, text_field, id_field), batch_rows)
    out = []
    for batch in source.batches(start):
        for i, (row_id, text) in enumerate(zip(batch.ids, batch.texts, strict=True)):
            out.append((batch.start + i, row_id, text, batch.problems.get(i)))
    return source, out


def test_text_lines_are_rows_numbered_from_one(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"first\r\nsecond\n\nbad \xff byte\nlast")
    source, rows = _rows(path)
    assert source.id_type == "int"
    assert [(o, i, t) for o, i, t, _ in rows] == [
        (0, 1, "first"), (1, 2, "second"), (2, 3, ""), (3, 4, "bad \udcff byte"), (4, 5, "last")]
    assert [r[:3] for r in _rows(path, start=3)[1]] == [(3, 4, "bad \udcff byte"), (4, 5, "last")]
    assert source.bytes_read() == path.stat().st_size


def test_gzipped_json_lines_with_ids_and_bad_rows(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    lines = [{"doc": "a", "body": "alpha"}, {"doc": "b", "body": 5}, "not json", [1, 2],
             {"doc": 7, "body": "wrong id type"}, {"doc": "c"}, "", {"doc": "d", "body": "delta"}]
    with gzip.open(path, "wt") as sink:
        sink.write("\n".join(line if isinstance(line, str) else json.dumps(line)
                             for line in lines) + "\n")
    source, rows = _rows(path, text_field="body", id_field="doc")
    assert source.id_type == "str"
    assert [(r[1], r[2]) for r in rows if r[3] is None] == [("a", "alpha"), ("b", 5),
                                                            ("d", "delta")]
    problems = {r[0]: r[3] for r in rows if r[3]}
    assert problems[2].startswith("line is not valid JSON")
    assert problems[3] == "line is a JSON list, not an object"
    assert problems[4] == "id 7 is a int; this job's ids are strings"
    assert problems[5] == "has no field 'body'"
    assert problems[6] == "line is empty"
    assert [r[0] for r in _rows(path, text_field="body", id_field="doc", start=6)[1]] == [6, 7]


def test_csv_ids_are_strings_and_quoted_newlines_stay_in_one_row(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text('\ufeffid,text\n10,"two\nlines"\n11,plain\n12\n13,"x",extra\n',
                    encoding="utf-8")
    source, rows = _rows(path, id_field="id")
    assert source.id_type == "str"
    assert [r[1:] for r in rows] == [
        ("10", "two\nlines", None), ("11", "plain", None),
        (None, None, "row has 1 fields; the header has 2"),
        (None, None, "row has 3 fields; the header has 2")]
    assert [r[1] for r in _rows(path, id_field="id", start=1)[1]][:1] == ["11"]


def test_parquet_resumes_inside_a_later_row_group(tmp_path):
    path = tmp_path / "docs.parquet"
    table = pa.table({"key": [f"k{i}" for i in range(10)], "text": [f"t{i}" for i in range(10)]})
    pq.write_table(table, path, row_group_size=4)
    source, rows = _rows(path, id_field="key", start=6, batch_rows=3)
    assert source.total_rows == 10
    assert [(r[0], r[1], r[2]) for r in rows] == [(i, f"k{i}", f"t{i}") for i in range(6, 10)]
    _, by_number = _rows(path, start=9)
    assert by_number == [(9, 10, "t9", None)]


def test_parquet_null_id_and_null_text_are_row_problems(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": pa.array([1, None, 3], pa.int32()),
                             "text": ["a", "b", None]}), path)
    source, rows = _rows(path, id_field="id")
    assert source.id_type == "int"
    assert rows == [(0, 1, "a", None), (1, None, "b", "id is missing or null"), (2, 3, None, None)]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("docs.csv", "id,body\n1,x\n", {"text_field": "text"},
         "has no column 'text'; it has: 'id', 'body'"),
        ("docs.jsonl", '{"title": "x", "body": "y"}\n', {"text_field": "text"},
         "has no field 'text'; it has: 'title', 'body'"),
        ("docs.jsonl", '{"text": "x"}\n', {"id_field": "doc_id"},
         "has no field 'doc_id'; it has: 'text'"),
        ("docs.jsonl", '{"text": "x", "id": 1.5}\n', {"id_field": "id"},
         "ids must be integers or strings"),
        ("docs.jsonl", "[1]\n", {}, "the first line is a JSON list, not an object"),
        ("docs.txt", "x\n", {"text_field": "body"}, "plain text, one text a line"),
        ("docs.xlsx", "x", {}, "cannot tell the format"),
        ("docs.parquet", "not parquet at all", {}, "is not a readable Parquet file"),
        ("docs.parquet.gz", "x", {}, "gzipped parquet file is not supported"),
        ("docs.jsonl.gz", "not gzip", {}, "cannot be read past byte"),
    ],
)
def test_whole_file_problems_are_refused_up_front(tmp_path, name, content, kwargs, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputFileError, match=message):
        open_source(input_spec(path, None, kwargs.get("text_field"), kwargs.get("id_field")))


def test_parquet_columns_of_the_wrong_type_are_refused(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [1, 2], "id": [0.5, 1.5], "body": ["a", "b"]}), path)
    with pytest.raises(InputFileError, match="column 'text' holds int64, not strings"):
        open_source(input_spec(path, None, None, None))
    with pytest.raises(InputFileError, match="id column 'id' holds double"):
        open_source(input_spec(path, None, "body", "id"))
    with pytest.raises(InputFileError, match="has no column 'txt'; it has: 'text', 'id', 'body'"):
        open_source(input_spec(path, None, "txt", None))


def test_missing_input_a_folder_and_stdin_are_refused(tmp_path):
    with pytest.raises(InputFileError, match="does not exist; check the path"):
        input_spec(tmp_path / "nope.txt", None, None, None)
    with pytest.raises(InputFileError, match="is a folder"):
        input_spec(tmp_path, None, None, None)
    with pytest.raises(InputFileError, match="cannot read stdin"):
        input_spec(Path("-"), None, None, None)


@pytest.mark.parametrize("name", ["blob.txt", "blob.csv", "blob.jsonl.gz"])
def test_binary_files_are_refused_before_any_row(tmp_path, name):
    blob = bytes(range(256)) * 8
    path = tmp_path / name
    path.write_bytes(gzip.compress(blob) if name.endswith(".gz") else blob)
    with pytest.raises(InputFileError, match=r"looks binary .*NUL byte"):
        open_source(input_spec(path, None, None, None))


def test_the_cli_refuses_bad_inputs_and_unwritable_outputs_before_connecting(tmp_path):
    """No Redis listens at the URL: every refusal must come first, as one line, no traceback."""
    (tmp_path / "texts.txt").write_text("one\ntwo\n")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02")
    cases = {
        ("--input", "missing.txt", "--output", "o.npy"): "does not exist",
        ("--input", ".", "--output", "o.npy"): "is a folder",
        ("--input", "blob.txt", "--output", "o.npy"): "looks binary",
        ("--input", "texts.txt", "--output", "texts.txt/o.npy"): "cannot write",
        ("--input", "texts.txt", "--output", "nowhere/o.npy"): "cannot write",
    }
    env = {**os.environ, "EMBEDQ_REDIS_URL": "redis://127.0.0.1:9/0"}
    for args, message in cases.items():
        run = subprocess.run([sys.executable, "-m", "embedq.cli", "embed", *args], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode != 0, args
        assert message in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr, (args, run.stderr)
        assert "broker" not in run.stderr, (args, run.stderr)


def test_empty_files_are_jobs_of_no_rows(tmp_path):
    for name in ("e.txt", "e.jsonl", "e.csv"):
        (tmp_path / name).write_bytes(b"")
        assert _rows(tmp_path / name)[1] == []


def test_fingerprint_sees_content_changes_but_forgives_a_new_time(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a\nb\n")
    before = fingerprint(path)
    os.utime(path, ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
    assert changes(before.as_json(), fingerprint(path)) == []
    with path.open("a") as sink:
        sink.write("c\n")
    assert [c.split()[0] for c in changes(before.as_json(), fingerprint(path))] == [
        "size", "head", "tail"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["a"]}), path)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pyarrow"] = None  # as if the files extra were not installed
        from embedq.producer.corpus.formats import input_spec, open_source
        from pathlib import Path
        open_source(input_spec(Path({str(path)!r}), None, None, None))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert MissingExtraError.__name__ in run.stderr
    assert "pip install 'embedq[files]'" in run.stderr


def test_the_corpus_package_imports_neither_torch_nor_pyarrow():
    code = ("import sys, embedq.producer, embedq.producer.corpus; "
            "print([m for m in ('torch', 'pyarrow') if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == "[]"
