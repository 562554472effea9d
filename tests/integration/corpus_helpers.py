"""Helpers for the corpus job tests: corpora in every format, reading outputs, pausing workers."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from tests.support import WorkerProcess


def write_corpus(path: Path, texts: list[str], ids: list[object]) -> Path:
    """``texts`` with ``ids`` in the format the name says (text lines carry no ids)."""
    name = path.name
    opener = gzip.open if name.endswith(".gz") else open
    if ".parquet" in name:
        pq.write_table(pa.table({"doc_id": ids, "body": texts}), path, row_group_size=128)
    elif ".jsonl" in name:
        with opener(path, "wt", encoding="utf-8") as sink:
            sink.writelines(json.dumps({"doc_id": i, "body": t}) + "\n"
                            for i, t in zip(ids, texts, strict=True))
    elif ".csv" in name:
        with opener(path, "wt", encoding="utf-8", newline="") as sink:
            writer = csv.writer(sink)
            writer.writerow(["doc_id", "body"])
            writer.writerows(zip(ids, texts, strict=True))
    else:
        with opener(path, "wt", encoding="utf-8") as sink:
            sink.writelines(t + "\n" for t in texts)
    return path


def read_vectors(path: Path) -> tuple[list[object], np.ndarray]:
    table = pq.read_table(path)
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    return table.column("id").to_pylist(), vectors


@contextmanager
def paused(worker: WorkerProcess) -> Iterator[None]:
    """SIGSTOP the worker and its pool, so a job cannot finish behind the test's back."""
    processes = [psutil.Process(worker.process.pid),
                 *psutil.Process(worker.process.pid).children(recursive=True)]
    for process in processes:
        process.suspend()
    try:
        yield
    finally:
        for process in processes:
            process.resume()


def durable_end(out: Path) -> int:
    names = sorted((out.parent / f"{out.name}.embedq" / "parts").glob("part-*.npz"))
    return int(names[-1].stem.split("-")[2]) if names else 0
