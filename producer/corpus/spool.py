"""The durable spool: one part file per committed window, named by the rows it covers.

A Parquet file is readable only once its footer is written, so results cannot be made durable by
appending row groups to the output. Instead each commit publishes ``part-<start>-<end>.npz``
(written aside, fsynced, renamed, folder fsynced). The file names are the record of progress: the
parts must cover ``[0, end)`` without gaps, and a resumed job starts at ``end``. Failed rows are
kept in the part of their range, so the errors file, built from the parts at the end, lists each
failure once and never one whose result was lost. Parts are numpy archives, so jobs that do not
touch Parquet need no pyarrow; they load without pickle.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedq.config.errors import CheckpointMismatchError
from embedq.config.files import replace_durably

_NAME = re.compile(r"^part-(\d{12})-(\d{12})\.npz$")


@dataclass(slots=True)
class Part:
    """Rows ``[start, end)`` of the input: the embedded ones and the failed ones."""

    start: int
    end: int
    ids: np.ndarray  # of the embedded rows, int64 or str
    vectors: np.ndarray  # (embedded rows, width) in the route's output dtype
    precision: np.ndarray  # str per embedded row
    truncated: np.ndarray  # bool per embedded row
    model: str  # "" when no row of the part was embedded
    revision: str
    cached: int
    err_rows: np.ndarray  # int64 offsets of the failed rows
    err_ids: np.ndarray  # str: each failed row's id as JSON (it may be of any type, or null)
    err_reasons: np.ndarray  # str

    @property
    def name(self) -> str:
        return f"part-{self.start:012d}-{self.end:012d}.npz"


class Spool:
    """The parts folder of one job."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def open(self) -> int:
        """Create the folder, drop half-written parts, and return where the durable rows end."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*.tmp"):
            leftover.unlink()  # a commit that a kill interrupted before its rename
        end = 0
        for start, stop, _ in self._ranges():
            if start != end:
                raise CheckpointMismatchError(
                    f"the checkpoint in {str(self.folder)!r} is damaged: rows {end:,} to "
                    f"{start:,} are missing; re-run with --restart to start over")
            end = stop
        return end

    def _ranges(self) -> list[tuple[int, int, Path]]:
        found = ((_NAME.match(path.name), path) for path in self.folder.iterdir())
        return sorted((int(m[1]), int(m[2]), path) for m, path in found if m)

    def commit(self, part: Part) -> None:
        """Publish ``part`` durably; after this returns its rows survive any crash."""
        def write(path: Path) -> None:
            with path.open("wb") as sink:
                np.savez(sink, ids=part.ids, vectors=part.vectors, precision=part.precision,
                         truncated=part.truncated, model=np.str_(part.model),
                         revision=np.str_(part.revision), cached=np.int64(part.cached),
                         err_rows=part.err_rows, err_ids=part.err_ids,
                         err_reasons=part.err_reasons)

        replace_durably(self.folder / part.name, write)

    def columns(self, *names: str) -> Iterator[dict[str, np.ndarray]]:
        """The named arrays of every part, in row order (only those are read from disk)."""
        for _, _, path in self._ranges():
            with np.load(path, allow_pickle=False) as data:
                yield {name: data[name] for name in names}

    def parts(self) -> Iterator[Part]:
        """Every part, whole, in row order."""
        for start, end, path in self._ranges():
            with np.load(path, allow_pickle=False) as data:
                yield Part(start, end, data["ids"], data["vectors"], data["precision"],
                           data["truncated"], str(data["model"]), str(data["revision"]),
                           int(data["cached"]), data["err_rows"], data["err_ids"],
                           data["err_reasons"])

    def model(self) -> tuple[str, str] | None:
        """Model and revision of the rows already embedded, None before the first."""
        found = ((str(c["model"]), str(c["revision"])) for c in self.columns("model", "revision"))
        return next((made_by for made_by in found if made_by[0]), None)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
