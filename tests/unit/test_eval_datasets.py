"""Bad evaluation files fail with one DataFileError that names the file, the line and the fix."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from embedq.config.errors import DataFileError, EmbedqError
from embedq.ops.evaluation.datasets import read_labelled, read_pairs, read_retrieval
from embedq.ops.evaluation.samples import clustering_task, retrieval_task, sts_task


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_pairs_are_read_with_extra_columns_ignored(tmp_path):
    path = write(tmp_path / "p.csv", "id,sentence1,sentence2,score\n1,a cat,a dog,2.5\n"
                                     '2,"one, two",three,5\n')
    pairs = read_pairs(path)
    assert pairs.first == ["a cat", "one, two"]
    assert pairs.scores == [2.5, 5.0]


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(EmbedqError, match=r"nope\.csv does not exist"):
        read_pairs(tmp_path / "nope.csv")


def test_labelled_needs_two_labels(tmp_path):
    with pytest.raises(DataFileError, match="fewer than two labels"):
        read_labelled(write(tmp_path / "l.csv", "text,label\na,x\nb,x\n"))


def beir(tmp_path: Path, qrels: str, corpus_lines: list[str] | None = None) -> tuple[Path, ...]:
    corpus = tmp_path / "corpus.jsonl.gz"
    lines = corpus_lines or [json.dumps({"_id": "d1", "title": "T", "text": "alpha"}),
                             json.dumps({"_id": "d2", "text": "beta"})]
    with gzip.open(corpus, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    queries = write(tmp_path / "queries.jsonl", '{"_id": "q1", "text": "a?"}\n'
                                                '{"_id": "q2", "text": "b?"}\n')
    return corpus, queries, write(tmp_path / "qrels.tsv", qrels)


def test_beir_layout_keeps_judged_queries_and_joins_titles(tmp_path):
    data = read_retrieval(*beir(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\n"))
    assert data.query_ids == ["q1"]
    assert data.doc_texts == ["T alpha", "beta"]
    assert data.qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("pairs", "sentence1,sentence2,score\na,b,high\n",
     r"p\.csv line 2: score 'high' is not a number"),
    ("pairs", "sentence1,sentence2,score\na,b,1\na,,2\n", r"line 3: sentence2 is empty"),
    ("pairs", "sentence1,sentence2,score\na,b\n", r"line 2: expected 3 fields"),
    ("pairs", "sentence1,sentence2\na,b\n", r"line 1: header sentence1,sentence2 lacks score"),
    ("pairs", "", r"p\.csv is empty: expected a header sentence1,sentence2,score"),
    ("pairs", "sentence1,sentence2,score\n", r"has a header but no pairs"),
    ("qrels", "q1\td9\t1\n", r"qrels\.tsv line 1: corpus id 'd9' is not in corpus\.jsonl\.gz"),
    ("qrels", "query-id\tcorpus-id\tscore\nq7\td1\t1\n", r"line 2: query id 'q7' is not in"),
    ("qrels", "q1\td1\n", r"line 1: expected query-id<TAB>corpus-id<TAB>score"),
    ("qrels", "q1\td1\tyes\n", r"score 'yes' is not an integer"),
    ("qrels", "query-id\tcorpus-id\tscore\n", r"has a header but no judgements"),
])
def test_a_bad_file_names_its_line_and_problem(tmp_path, kind, text, expected):
    def read() -> object:
        if kind == "pairs":
            return read_pairs(write(tmp_path / "p.csv", text))
        return read_retrieval(*beir(tmp_path, text))

    with pytest.raises(DataFileError, match=expected):
        read()


def test_malformed_corpus_line_is_named(tmp_path):
    files = beir(tmp_path, "q1\td1\t1\n", [json.dumps({"_id": "d1", "text": "a"}), "{oops"])
    with pytest.raises(DataFileError, match=r"corpus\.jsonl\.gz line 2: not JSON"):
        read_retrieval(*files)


def test_retrieval_wants_all_three_files(tmp_path):
    with pytest.raises(DataFileError, match="add --queries, --qrels"):
        retrieval_task(tmp_path / "corpus.jsonl", None, None)


def test_bundled_samples_load():
    evaluator, name = retrieval_task(None, None, None)
    assert evaluator.size() > 300
    assert "SQuAD" in name
    evaluator, name = sts_task(None)
    assert evaluator.size() > 500
    assert "STS-B" in name
    evaluator, name = clustering_task(None)
    assert evaluator.size() == 220
    assert "Banking77" in name
