"""Reading the files ``embedq eval`` judges a route on, with errors that name the file and line.

Three layouts, the ones people already have: STS pairs as CSV (``sentence1,sentence2,score``),
labelled texts as CSV (``text,label``), and BEIR's retrieval layout (``corpus.jsonl[.gz]``,
``queries.jsonl``, ``qrels.tsv``). Everything is checked before a single text is embedded, so a
typo on line 9,000 costs a second, not an hour of worker time.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embedq.config.errors import DataFileError


@dataclass(frozen=True)
class Pairs:
    """Sentence pairs with a gold similarity score each."""

    first: list[str]
    second: list[str]
    scores: list[float]


@dataclass(frozen=True)
class Labelled:
    """Texts with a class label each (the clusters k-means should find)."""

    texts: list[str]
    labels: list[str]


@dataclass(frozen=True)
class RetrievalSet:
    """A corpus, the queries that have judgements, and the judgements (query -> doc -> grade)."""

    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]


def _open_text(path: Path) -> io.TextIOBase:
    """A text handle on ``path`` (gzip by suffix), or a DataFileError saying why not."""
    if not path.is_file():
        raise DataFileError(path, None, "does not exist (or is not a file)")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each row of a CSV with a header naming at least ``columns``."""
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataFileError(path, 1, f"unreadable header ({e})") from e
        if not header:
            raise DataFileError(path, None, f"is empty: expected a header {','.join(columns)}")
        missing = [name for name in columns if name not in header]
        if missing:
            raise DataFileError(path, 1, f"header {','.join(header)} lacks {', '.join(missing)}")
        try:
            for row in reader:
                if None in row or any(row[name] is None for name in columns):
                    raise DataFileError(path, reader.line_num,
                                        f"expected {len(header)} fields, found another count")
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataFileError(path, reader.line_num, str(e)) from e


def _text(path: Path, line: int, row: dict[str, str], column: str) -> str:
    value = row[column]
    if not value.strip():
        raise DataFileError(path, line, f"{column} is empty")
    return value


def _nonempty(path: Path, count: int, what: str) -> None:
    if count == 0:
        raise DataFileError(path, None, f"has a header but no {what}")


def read_pairs(path: Path) -> Pairs:
    """STS pairs: ``sentence1,sentence2,score`` (other columns are ignored)."""
    first: list[str] = []
    second: list[str] = []
    scores: list[float] = []
    for line, row in _csv_rows(path, ("sentence1", "sentence2", "score")):
        try:
            scores.append(float(row["score"]))
        except ValueError:
            raise DataFileError(path, line, f"score {row['score']!r} is not a number") from None
        first.append(_text(path, line, row, "sentence1"))
        second.append(_text(path, line, row, "sentence2"))
    _nonempty(path, len(scores), "pairs")
    return Pairs(first, second, scores)


def read_labelled(path: Path) -> Labelled:
    """Labelled texts: ``text,label``; at least two labels, or there is nothing to cluster."""
    texts: list[str] = []
    labels: list[str] = []
    for line, row in _csv_rows(path, ("text", "label")):
        texts.append(_text(path, line, row, "text"))
        labels.append(_text(path, line, row, "label"))
    _nonempty(path, len(texts), "rows")
    if len(set(labels)) < 2:
        raise DataFileError(path, None, "has fewer than two labels: nothing to cluster")
    return Labelled(texts, labels)


def _jsonl(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    with _open_text(path) as handle:
        try:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    item = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise DataFileError(path, line, f"not JSON ({e.msg})") from None
                if not isinstance(item, dict) or any(
                    not isinstance(item.get(name), str) for name in fields
                ):
                    raise DataFileError(path, line, f"expected an object with string "
                                                    f"{', '.join(fields)}")
                yield line, item
        except (UnicodeDecodeError, EOFError, OSError) as e:
            raise DataFileError(path, None, f"is unreadable ({e})") from e


def _texts_by_id(path: Path, kind: str) -> dict[str, str]:
    """``_id -> text`` of a BEIR corpus (``title`` + space + ``text``) or queries file."""
    found: dict[str, str] = {}
    for line, item in _jsonl(path, ("_id", "text")):
        key = str(item["_id"])
        if key in found:
            raise DataFileError(path, line, f"duplicate {kind} id {key!r}")
        title = item.get("title")
        text = f"{title} {item['text']}" if isinstance(title, str) and title else str(item["text"])
        if not text.strip():
            raise DataFileError(path, line, f"{kind} {key!r} has no text")
        found[key] = text
    _nonempty(path, len(found), f"{kind} lines")
    return found


def _read_qrels(path: Path) -> list[tuple[int, str, str, int]]:
    """(line, query id, doc id, grade) rows of a BEIR qrels TSV (its header line is optional)."""
    rows: list[tuple[int, str, str, int]] = []
    with _open_text(path) as handle:
        for line, raw in enumerate(handle, start=1):
            fields = raw.rstrip("\r\n").split("\t")
            if (line == 1 and fields[-1] == "score") or not raw.strip():
                continue
            if len(fields) != 3:
                raise DataFileError(path, line, "expected query-id<TAB>corpus-id<TAB>score")
            try:
                rows.append((line, fields[0], fields[1], int(fields[2])))
            except ValueError:
                raise DataFileError(path, line, f"score {fields[2]!r} is not an integer") from None
    _nonempty(path, len(rows), "judgements")
    return rows


def read_retrieval(corpus: Path, queries: Path, qrels: Path) -> RetrievalSet:
    """A BEIR set; only queries with at least one judgement are kept (BEIR's own rule)."""
    docs = _texts_by_id(corpus, "document")
    questions = _texts_by_id(queries, "query")
    judged: dict[str, dict[str, int]] = {}
    for line, query, doc, grade in _read_qrels(qrels):
        if query not in questions:
            raise DataFileError(qrels, line, f"query id {query!r} is not in {queries.name}")
        if doc not in docs:
            raise DataFileError(qrels, line, f"corpus id {doc!r} is not in {corpus.name}")
        judged.setdefault(query, {})[doc] = grade
    kept = [query for query in questions if query in judged]
    return RetrievalSet(list(docs), list(docs.values()), kept,
                        [questions[query] for query in kept], judged)
