"""Rows between the durable end and the reader, until they can be committed in input order.

A row is resolved when it failed a check while being read, or when its block of results came
back. Blocks come back in input order, so the good rows in flight form a FIFO, and everything
below the first row still in flight (the frontier) can go into a part. Model and revision must
be the same for every embedded row of a job: a block from another model (a fallback that took
over) or another revision (an upgraded worker) stops the job before anything of it is kept.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from embedq.config.errors import CheckpointMismatchError
from embedq.producer.corpus.formats import IdType
from embedq.producer.corpus.spool import Part
from embedq.producer.jobs import Embeddings


@dataclass(slots=True)
class _Resolved:
    ids: list[object] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    precision: list[str] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    cached: int = 0
    err_rows: list[int] = field(default_factory=list)
    err_ids: list[str] = field(default_factory=list)
    err_reasons: list[str] = field(default_factory=list)


class Ledger:
    """The rows of one run that are read but not yet durable."""

    def __init__(self, start: int, id_type: IdType, width: int, dtype: np.dtype,
                 model: tuple[str, str] | None) -> None:
        self.durable_end = start
        self.read_end = start  # offset after the last row read
        self.model = model  # (model, revision) of the job's embedded rows, once known
        self._id_type = id_type
        self._width = width
        self._dtype = dtype
        self._in_flight: deque[tuple[int, object]] = deque()
        self._done = _Resolved()
        self._errors_ahead: list[tuple[int, object, str]] = []  # failed rows above the frontier
        self.failed = 0
        self.embedded = 0
        self.cached = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def frontier(self) -> int:
        return self._in_flight[0][0] if self._in_flight else self.read_end

    @property
    def ready(self) -> int:
        """Rows that a commit now would make durable."""
        return self.frontier - self.durable_end

    def submitted(self, offset: int, row_id: object) -> None:
        self._in_flight.append((offset, row_id))
        self.read_end = offset + 1

    def rejected(self, offset: int, row_id: object, reason: str) -> None:
        self._errors_ahead.append((offset, row_id, reason))
        self.read_end = offset + 1
        self.failed += 1

    def resolve(self, block: Embeddings) -> None:
        """Take the next ``len(block.vectors)`` rows in flight out with their results."""
        count = len(block.vectors)
        good = [i for i in range(count) if i not in block.errors]
        self._check_model(block, good)  # before anything is taken: a refused block changes nothing
        rows = [self._in_flight.popleft() for _ in range(count)]
        done = self._done
        for i, (offset, row_id) in enumerate(rows):
            if i in block.errors:
                self._errors_ahead.append((offset, row_id, block.errors[i]))
                self.failed += 1
        done.ids.extend(rows[i][1] for i in good)
        done.vectors.append(block.vectors[good])
        done.precision.extend(block.precision[i] for i in good)
        done.truncated.extend(block.truncated[i] for i in good)
        hits = sum(1 for i in good if block.cached[i])
        done.cached += hits
        self.cached += hits
        self.embedded += len(good)

    def _check_model(self, block: Embeddings, good: list[int]) -> None:
        for i in good:
            made_by = (block.model[i], block.revision[i])
            if self.model is None:
                self.model = made_by
            elif made_by != self.model:
                raise CheckpointMismatchError(
                    f"row {self._in_flight[i][0] + 1:,} was embedded by {made_by[0]} revision "
                    f"{made_by[1]}, but this job's rows so far by {self.model[0]} revision "
                    f"{self.model[1]}; one output must not mix vector spaces. Start a worker "
                    f"that serves {self.model[0]} {self.model[1]} to resume, or re-run with "
                    "--restart to embed every row again")

    def take_part(self) -> Part | None:
        """Everything below the frontier as one part, or None when nothing is ready."""
        end = self.frontier
        if end == self.durable_end:
            return None
        done, self._done = self._done, _Resolved()
        errors = [e for e in self._errors_ahead if e[0] < end]
        self._errors_ahead = [e for e in self._errors_ahead if e[0] >= end]
        model, revision = self.model if done.ids and self.model else ("", "")
        part = Part(
            start=self.durable_end, end=end,
            ids=np.array(done.ids, dtype=np.int64 if self._id_type == "int" else np.str_),
            vectors=(np.concatenate(done.vectors) if done.vectors
                     else np.empty((0, self._width), self._dtype)),
            precision=np.array(done.precision, dtype=np.str_),
            truncated=np.array(done.truncated, dtype=bool),
            model=model, revision=revision, cached=done.cached,
            err_rows=np.array([e[0] for e in errors], dtype=np.int64),
            err_ids=np.array([json.dumps(e[1]) for e in errors], dtype=np.str_),
            err_reasons=np.array([e[2] for e in errors], dtype=np.str_))
        self.durable_end = end
        return part
