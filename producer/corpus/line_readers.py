"""Line formats: plain text (a line a text) and JSON lines, either of them gzipped.

Lines are read as bytes and decoded one by one, so one bad byte or one broken JSON line costs
its own row (it goes to the errors file), never the job. Undecodable bytes become lone
surrogates, which the shared text check reports in the same words the worker would use.
"""

from __future__ import annotations

import gzip
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from embedq.config.errors import InputFileError
from embedq.producer.corpus.formats import (
    IdType,
    InputSpec,
    RowBatch,
    batched,
    id_problem,
    id_type_of,
    missing_field,
)

_MISSING = object()
_SNIFF_BYTES = 8192


class LineFile:
    """An input opened for reading lines as bytes; `tell` is the position in the file on disk."""

    def __init__(self, spec: InputSpec) -> None:
        self.path = spec.path
        try:
            self._raw: BinaryIO = spec.path.open("rb")
        except OSError as exc:
            raise InputFileError(f"cannot read {str(spec.path)!r}: {exc.strerror}; "
                                 "check that it is a readable file") from exc
        self._end = 0
        self._text: io.TextIOWrapper | None = None
        self._stream: BinaryIO = (gzip.GzipFile(fileobj=self._raw, mode="rb")  # type: ignore[assignment]
                                  if spec.gzipped else self._raw)
        self._refuse_binary(spec)

    def _refuse_binary(self, spec: InputSpec) -> None:
        """A NUL byte near the start means a binary file, not text with a few bad rows: refuse
        it before any work (stray invalid UTF-8 in a text file fails only its own rows)."""
        try:
            head = self._stream.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]  # type: ignore[attr-defined]
        except (OSError, EOFError) as exc:
            self.__exit__()
            raise self.damaged(exc) from exc
        if b"\x00" in head:
            self.__exit__()
            raise InputFileError(f"{str(spec.path)!r} looks binary (a NUL byte in its first "
                                 f"{_SNIFF_BYTES // 1024} KiB); embedq reads UTF-8 text, one text "
                                 "a line, JSON lines, CSV or Parquet")

    def __enter__(self) -> LineFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = self._raw.tell()
        if self._text is not None:
            self._text.close()  # and with it the streams below it
        self._stream.close()
        self._raw.close()

    def tell(self) -> int:
        return self._end if self._raw.closed else self._raw.tell()

    def text(self) -> io.TextIOWrapper:
        """The file as text; a UTF-8 byte order mark is dropped, undecodable bytes are kept as
        surrogates so that the row they are in fails alone."""
        self._text = io.TextIOWrapper(self._stream, encoding="utf-8-sig",
                                      errors="surrogateescape", newline="")
        return self._text

    def damaged(self, exc: Exception) -> InputFileError:
        """The error for a file that stops making sense part way (truncated gzip, bad CSV)."""
        return InputFileError(f"{str(self.path)!r} cannot be read past byte {self.tell():,}: "
                              f"{exc}; is the file complete and of the format its name says?")

    def lines(self) -> Iterator[bytes]:
        """Every line, without its line ending; a damaged file raises `InputFileError`."""
        try:
            for line in self._stream:
                yield line.rstrip(b"\r\n")
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise self.damaged(exc) from exc


def _first_line(spec: InputSpec) -> bytes | None:
    """The first non-blank line (reading it also proves the file opens and decompresses)."""
    with LineFile(spec) as source:
        return next((line for line in source.lines() if line.strip()), None)


class FileSource:
    """What the line and CSV readers share: the file, its size and the reading position."""

    def __init__(self, spec: InputSpec, batch_rows: int) -> None:
        self.path = spec.path
        self.size = spec.path.stat().st_size
        self.total_rows: int | None = None
        self._spec = spec
        self._batch_rows = batch_rows
        self._file: LineFile | None = None

    def bytes_read(self) -> int:
        return self._file.tell() if self._file is not None else 0


class _LineSource(FileSource, ABC):
    """Each line becomes one row, numbered from 0."""

    @abstractmethod
    def parse(self, offset: int, line: bytes) -> tuple[object, object, str | None]:
        """``(id, text, problem)`` of one line."""

    def batches(self, start: int) -> Iterator[RowBatch]:
        with LineFile(self._spec) as source:
            self._file = source
            lines = islice(enumerate(source.lines()), start, None)  # skipped lines: not parsed
            yield from batched((self.parse(offset, line) for offset, line in lines), start,
                               self._batch_rows)


class TextLinesSource(_LineSource):
    """One text a line; the id is the line number (from 1)."""

    def __init__(self, spec: InputSpec, batch_rows: int) -> None:
        super().__init__(spec, batch_rows)
        self.id_type: IdType = "int"
        _first_line(spec)

    def parse(self, offset: int, line: bytes) -> tuple[object, object, str | None]:
        return offset + 1, line.decode("utf-8", "surrogateescape"), None


class JsonLinesSource(_LineSource):
    """One JSON object a line; the text and the id are named fields of it."""

    def __init__(self, spec: InputSpec, batch_rows: int) -> None:
        super().__init__(spec, batch_rows)
        self._text_field = spec.text_field or "text"
        self._id_field = spec.id_field
        self.id_type: IdType = "int"
        first = _first_line(spec)
        if first is None:
            return  # an empty file is a job of no rows
        record = _object(spec.path, first)
        if self._text_field not in record:
            raise missing_field(spec.path, self._text_field, "field", list(record))
        if self._id_field is not None:
            if self._id_field not in record:
                raise missing_field(spec.path, self._id_field, "field", list(record))
            self.id_type = id_type_of(record[self._id_field], spec.path, self._id_field)

    def parse(self, offset: int, line: bytes) -> tuple[object, object, str | None]:
        if not line.strip():
            return None, None, "line is empty"
        try:
            record = json.loads(line)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            return None, None, f"line is not valid JSON ({exc})"
        if not isinstance(record, dict):
            return None, None, f"line is a JSON {type(record).__name__}, not an object"
        row_id: object = offset + 1
        if self._id_field is not None:
            row_id = record.get(self._id_field)
            problem = id_problem(row_id, self.id_type)
            if problem is not None:
                return row_id, None, problem
        text = record.get(self._text_field, _MISSING)
        if text is _MISSING:
            return row_id, None, f"has no field {self._text_field!r}"
        return row_id, text, None


def _object(path: Path, line: bytes) -> dict[str, object]:
    """The first record, which names the fields every line should have."""
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise InputFileError(f"{str(path)!r} does not start with a JSON line ({exc}); "
                             "JSON lines hold one object a line") from exc
    if not isinstance(record, dict):
        raise InputFileError(f"{str(path)!r}: the first line is a JSON "
                             f"{type(record).__name__}, not an object; JSON lines hold one "
                             "object a line")
    return record
