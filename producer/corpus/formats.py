"""Which reader a corpus file gets, and what every reader hands the job: batches of rows.

A row is (offset, id, text). Offsets count every data row from 0, whatever happens to it, so a
checkpoint can say "rows below N are done" and a resumed job skips exactly N rows. Problems a
reader finds in one row (bad JSON, a missing field, an id of the wrong type) travel with the batch
and end in the errors file; problems with the whole file raise `InputFileError` before any work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal, Protocol

from embedq.config.errors import InputFileError, OutputFileError

IdType = Literal["int", "str"]

INPUT_SUFFIXES = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
                  ".parquet": "parquet"}
OUTPUT_SUFFIXES = {".parquet": "parquet", ".npy": "npy"}
GZIP_FORMATS = ("txt", "jsonl", "csv")  # line formats may be gzipped; parquet compresses inside


@dataclass(slots=True)
class RowBatch:
    """Consecutive rows from ``start``; ``problems`` maps an index in the batch to its reason."""

    start: int
    ids: list[object]
    texts: list[object]
    problems: dict[int, str] = field(default_factory=dict)


Row = tuple[object, object, "str | None"]  # (id, text, problem) of one row


def batched(rows: Iterable[Row], start: int, size: int) -> Iterator[RowBatch]:
    """Group rows that begin at offset ``start`` into batches of ``size``."""
    source = iter(rows)
    while chunk := list(islice(source, size)):
        batch = RowBatch(start, [row[0] for row in chunk], [row[1] for row in chunk])
        batch.problems = {i: row[2] for i, row in enumerate(chunk) if row[2] is not None}
        yield batch
        start += len(chunk)


class Source(Protocol):
    """An open input: its shape, and its rows from any offset on."""

    path: Path
    id_type: IdType
    total_rows: int | None  # known up front for Parquet only
    size: int

    def batches(self, start: int) -> Iterator[RowBatch]:
        """Rows from offset ``start`` on, in input order."""
        ...

    def bytes_read(self) -> int:
        """How far into the file reading has got (progress for formats without a row count)."""
        ...


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What to read and how: the file, its format, and the fields that hold the text and the id."""

    path: Path
    format: str
    gzipped: bool
    text_field: str | None
    id_field: str | None


def input_spec(path: Path, fmt: str | None, text_field: str | None,
               id_field: str | None) -> InputSpec:
    """Check the file is there and tell its format from ``fmt`` or its suffix."""
    if str(path) == "-":
        raise InputFileError("a corpus job cannot read stdin (it could not resume); "
                             "save the input to a file and pass its path")
    if not path.exists():
        raise InputFileError(f"input file {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise InputFileError(f"input {str(path)!r} is a folder; pass one file")
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = suffixes[-1:] == [".gz"]
    if fmt is None:
        fmt = INPUT_SUFFIXES.get(suffixes[-2 if gzipped else -1] if suffixes[gzipped:] else "")
        if fmt is None:
            known = ", ".join([*INPUT_SUFFIXES, *(f".{f}.gz" for f in GZIP_FORMATS)])
            raise InputFileError(f"cannot tell the format of {str(path)!r} from its name; "
                                 f"known: {known}; or pass --format")
    elif fmt not in INPUT_SUFFIXES.values():
        raise InputFileError(f"unknown input format {fmt!r}; known: txt, jsonl, csv, parquet")
    if gzipped and fmt not in GZIP_FORMATS:
        raise InputFileError(f"{str(path)!r}: a gzipped {fmt} file is not supported; "
                             f"gzip works for {', '.join(GZIP_FORMATS)}")
    if fmt == "txt" and (text_field or id_field):
        raise InputFileError(f"{str(path)!r} is plain text, one text a line, with no fields; "
                             "drop --text-field/--id-field (ids are line numbers)")
    return InputSpec(path, fmt, gzipped, text_field if fmt != "txt" else None, id_field)


def output_format(path: Path) -> str:
    """``parquet`` or ``npy``, from the output's suffix."""
    fmt = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise OutputFileError(f"cannot write {str(path)!r}: the output must end in "
                              f"{' or '.join(OUTPUT_SUFFIXES)}")
    return fmt


def missing_field(path: Path, name: str, kind: str, found: list[str]) -> InputFileError:
    """The error for a field that is not there, listing the fields that are."""
    listed = ", ".join(repr(f) for f in found) if found else "none"
    return InputFileError(f"{str(path)!r} has no {kind} {name!r}; it has: {listed}; "
                          "pick one with --text-field / --id-field")


def id_problem(value: object, id_type: IdType) -> str | None:
    """Why ``value`` cannot be a row's id in a job whose ids are ``id_type``, or None."""
    if value is None:
        return "id is missing or null"
    if id_type == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return f"id {value!r} is a {type(value).__name__}; this job's ids are integers"
    if not isinstance(value, str):
        return f"id {value!r} is a {type(value).__name__}; this job's ids are strings"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"id {value!r} is not valid UTF-8"
    return None


def id_type_of(value: object, path: Path, field_name: str) -> IdType:
    """The id type a job takes from its first id (JSON lines), or a clear refusal."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputFileError(f"{str(path)!r}: the first row's {field_name!r} is "
                             f"{value!r} ({type(value).__name__}); ids must be integers or "
                             "strings")
    return "int" if isinstance(value, int) else "str"


def open_source(spec: InputSpec, batch_rows: int = 4096) -> Source:
    """Open the input and check its fields; raises `InputFileError` naming what is wrong."""
    if spec.format == "parquet":
        from embedq.producer.corpus.parquet_reader import ParquetSource

        return ParquetSource(spec, batch_rows)
    if spec.format == "csv":
        from embedq.producer.corpus.csv_reader import CsvSource

        return CsvSource(spec, batch_rows)
    from embedq.producer.corpus.line_readers import JsonLinesSource, TextLinesSource

    if spec.format == "jsonl":
        return JsonLinesSource(spec, batch_rows)
    return TextLinesSource(spec, batch_rows)
