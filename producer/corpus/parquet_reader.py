"""Parquet input: two columns read a batch at a time; a resume jumps by row group.

The footer gives the row count (so progress has a true total) and each row group's size, so a
job resumed at row N opens the row group that holds N and drops only the rows before N in it.
Memory follows the input's row groups: pyarrow decodes one group of the two columns at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from embedq.config.errors import InputFileError
from embedq.producer.corpus.arrow import require_pyarrow
from embedq.producer.corpus.formats import (
    IdType,
    InputSpec,
    RowBatch,
    id_problem,
    missing_field,
)


class ParquetSource:
    """Rows of a Parquet file; the text and the id are named columns."""

    def __init__(self, spec: InputSpec, batch_rows: int) -> None:
        pa = require_pyarrow("reading Parquet")
        self._pa = pa
        self.path = spec.path
        self.size = spec.path.stat().st_size
        self._batch_rows = batch_rows
        try:
            self._file: Any = pa.parquet.ParquetFile(spec.path)
        except (pa.ArrowException, OSError) as exc:
            raise InputFileError(f"{str(spec.path)!r} is not a readable Parquet file ({exc}); "
                                 "check the file, or pass --format for another format") from exc
        schema = self._file.schema_arrow
        self._text = spec.text_field or "text"
        self._columns = [self._text] if spec.id_field is None else [self._text, spec.id_field]
        for name in self._columns:
            if name not in schema.names:
                raise missing_field(spec.path, name, "column", list(schema.names))
        types = pa.types
        text_type = schema.field(self._text).type
        if not (types.is_string(text_type) or types.is_large_string(text_type)):
            raise InputFileError(f"{str(spec.path)!r}: column {self._text!r} holds {text_type}, "
                                 "not strings; name the text column with --text-field")
        self.id_type: IdType = "int"
        if spec.id_field is not None:
            self.id_type = self._id_type(schema.field(spec.id_field).type, spec.id_field)
        metadata = self._file.metadata
        self.total_rows: int | None = metadata.num_rows
        self._group_ends = list(accumulate(
            metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)))

    def _id_type(self, arrow_type: Any, name: str) -> IdType:
        types = self._pa.types
        if types.is_integer(arrow_type):
            return "int"
        if types.is_string(arrow_type) or types.is_large_string(arrow_type):
            return "str"
        raise InputFileError(f"{str(self.path)!r}: id column {name!r} holds {arrow_type}; ids "
                             "must be integers or strings (cast the column, or drop --id-field "
                             "to use row numbers)")

    def bytes_read(self) -> int:
        return 0  # progress counts rows: the footer knows how many there are

    def batches(self, start: int) -> Iterator[RowBatch]:
        first = next((g for g, end in enumerate(self._group_ends) if end > start), None)
        if first is None:
            return
        skip = start - (self._group_ends[first - 1] if first else 0)
        offset = start
        groups = list(range(first, len(self._group_ends)))
        for batch in self._file.iter_batches(batch_size=self._batch_rows, row_groups=groups,
                                             columns=self._columns, use_threads=False):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            batch = batch.slice(skip)
            skip = 0
            texts = batch.column(0).to_pylist()
            ids = (batch.column(1).to_pylist() if len(self._columns) == 2
                   else list(range(offset + 1, offset + 1 + len(texts))))
            problems = {i: problem for i, value in enumerate(ids)
                        if (problem := id_problem(value, self.id_type)) is not None}
            yield RowBatch(offset, ids, texts, problems)
            offset += len(texts)
