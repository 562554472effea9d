"""CSV with a header row, plain or gzipped, read by the standard library.

CSV has no types, so ids from a CSV are strings: pyarrow's reader infers a column's type from
its first block and would fail, or change the id column's type, when a later block disagrees.
Reading with `csv.reader` also needs no extra package. Quoted fields may hold newlines, so the
progress of a CSV job is measured in bytes, not lines.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from itertools import islice

from embedq.producer.corpus.formats import IdType, InputSpec, RowBatch, batched, missing_field
from embedq.producer.corpus.line_readers import FileSource, LineFile


class CsvSource(FileSource):
    """Rows of a CSV file; the text and the id are columns named in its header."""

    def __init__(self, spec: InputSpec, batch_rows: int) -> None:
        # Long texts must reach the text check (and its clear message), not trip csv's limit.
        csv.field_size_limit(sys.maxsize)
        super().__init__(spec, batch_rows)
        self.id_type: IdType = "str" if spec.id_field else "int"
        with LineFile(spec) as source:
            header = self._header(source, csv.reader(source.text()))
        self._width = len(header)
        text_field = spec.text_field or "text"
        self._text_at = self._column(header, text_field)
        self._id_at = None if spec.id_field is None else self._column(header, spec.id_field)

    def _column(self, header: list[str], name: str) -> int:
        if not header:
            return 0  # an empty file is a job of no rows
        if name not in header:
            raise missing_field(self.path, name, "column", header)
        return header.index(name)

    def _header(self, source: LineFile, reader: Iterator[list[str]]) -> list[str]:
        try:
            return next(reader, [])
        except (OSError, EOFError, csv.Error) as exc:
            raise source.damaged(exc) from exc

    def _row(self, offset: int, fields: list[str]) -> tuple[object, object, str | None]:
        if len(fields) != self._width:
            return None, None, f"row has {len(fields)} fields; the header has {self._width}"
        row_id = offset + 1 if self._id_at is None else fields[self._id_at]
        return row_id, fields[self._text_at], None

    def batches(self, start: int) -> Iterator[RowBatch]:
        with LineFile(self._spec) as source:
            self._file = source
            reader = csv.reader(source.text())
            self._header(source, reader)
            rows = (self._row(offset, fields)
                    for offset, fields in islice(enumerate(reader), start, None))
            try:
                yield from batched(rows, start, self._batch_rows)
            except (OSError, EOFError, csv.Error) as exc:
                raise source.damaged(exc) from exc
