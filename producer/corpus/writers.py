"""The final files, assembled from the spool in one sequential pass each, published atomically.

Parquet gets row groups of about 8 MiB of vectors whatever the commit size was (a reader wants
a few large groups, not one per commit), so memory during the merge is one row group. ``.npy``
is filled through a memory map, with the ids beside it as JSON lines. The errors file lists every
failed row once, from the parts that hold them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embedq.config.files import replace_durably
from embedq.producer.corpus import killpoints
from embedq.producer.corpus.arrow import require_pyarrow
from embedq.producer.corpus.formats import IdType
from embedq.producer.corpus.spool import Part, Spool

ROW_GROUP_BYTES = 8 << 20


def write_parquet(spool: Spool, path: Path, *, id_type: IdType, width: int, dtype: np.dtype,
                  metadata: dict[str, Any]) -> None:
    """``path`` as Parquet: id, embedding (fixed-size list), model, revision, precision,
    truncated; the job's facts as JSON under the key ``embedq`` of the file's metadata."""
    pa = require_pyarrow("writing Parquet")
    schema = pa.schema(
        [("id", pa.int64() if id_type == "int" else pa.string()),
         ("embedding", pa.list_(pa.from_numpy_dtype(dtype), width)),
         ("model", pa.string()), ("revision", pa.string()), ("precision", pa.string()),
         ("truncated", pa.bool_())],
        metadata={"embedq": json.dumps(metadata)})
    group_rows = max(1024, ROW_GROUP_BYTES // max(1, width * dtype.itemsize))

    def table(parts: list[Part]) -> Any:
        vectors = np.concatenate([p.vectors for p in parts]).reshape(-1)
        counts = [len(p.ids) for p in parts]
        return pa.table([
            pa.array(np.concatenate([p.ids for p in parts]), type=schema.field("id").type),
            pa.FixedSizeListArray.from_arrays(pa.array(vectors), width),
            pa.array(np.repeat([p.model for p in parts], counts).astype(str)),
            pa.array(np.repeat([p.revision for p in parts], counts).astype(str)),
            pa.array(np.concatenate([p.precision for p in parts]).astype(str)),
            pa.array(np.concatenate([p.truncated for p in parts])),
        ], schema=schema)

    def write(temporary: Path) -> None:
        with pa.parquet.ParquetWriter(temporary, schema,
                                      use_dictionary=["model", "revision", "precision"]) as sink:
            wrote = False
            for group in _groups(spool.parts(), group_rows):
                sink.write_table(table(group), row_group_size=sum(len(p.ids) for p in group))
                wrote = True
                killpoints.reached("merge-partial")
            if not wrote:  # a job of no rows still gets a file with its schema
                sink.write_table(schema.empty_table())

    replace_durably(path, write)


def _groups(parts: Iterator[Part], rows: int) -> Iterator[list[Part]]:
    """Parts with embedded rows, gathered into groups of about ``rows`` rows."""
    group: list[Part] = []
    count = 0
    for part in parts:
        if not len(part.ids):
            continue
        group.append(part)
        count += len(part.ids)
        if count >= rows:
            yield group
            group, count = [], 0
    if group:
        yield group


def write_npy(spool: Spool, path: Path, ids_path: Path, *, width: int, dtype: np.dtype) -> None:
    """``path`` as one ``(rows, width)`` array and ``ids_path`` with one JSON id a line."""
    total = sum(len(c["ids"]) for c in spool.columns("ids"))

    def vectors(temporary: Path) -> None:
        sink = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=(total, width))
        row = 0
        for columns in spool.columns("vectors"):
            block = columns["vectors"]
            sink[row:row + len(block)] = block
            row += len(block)
            killpoints.reached("merge-partial")
        sink.flush()
        del sink

    def ids(temporary: Path) -> None:
        with temporary.open("w", encoding="utf-8") as sink:
            for columns in spool.columns("ids"):
                sink.writelines(json.dumps(value.item()) + "\n" for value in columns["ids"])

    replace_durably(path, vectors)
    killpoints.reached("vectors-published")
    replace_durably(ids_path, ids)


def write_errors(spool: Spool, path: Path) -> int:
    """The failed rows as JSON lines ``{"row", "id", "reason"}``; returns how many. No file is
    left when none failed."""
    count = sum(len(c["err_rows"]) for c in spool.columns("err_rows"))
    if not count:
        path.unlink(missing_ok=True)  # a stale list from an earlier run of this job
        return 0

    def write(temporary: Path) -> None:
        with temporary.open("w", encoding="utf-8") as sink:
            for c in spool.columns("err_rows", "err_ids", "err_reasons"):
                sink.writelines(
                    f'{{"row": {row + 1}, "id": {ident}, "reason": {json.dumps(str(reason))}}}\n'
                    for row, ident, reason in zip(c["err_rows"], c["err_ids"], c["err_reasons"],
                                                  strict=True))

    replace_durably(path, write)
    return count
