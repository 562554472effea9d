"""Evaluators for the user's files, or the small samples that ship inside the package.

A fresh install has no benchmark data beside it, so each task defaults to a sample packaged in
``embedq/ops/evaluation/data``, each under a licence that allows shipping it, with provenance in
that folder's README. The samples are small: they compare routes (fp32 against int8), they are
not benchmarks.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from embedq.config.errors import DataFileError
from embedq.ops.evaluation.datasets import read_labelled, read_pairs, read_retrieval
from embedq.ops.evaluation.evaluators import (
    Evaluator,
    clustering_evaluator,
    retrieval_evaluator,
    sts_evaluator,
)

STS_SAMPLE = ("embedq.worker.models", "data/sts.csv")  # shared with the precision probe
RETRIEVAL_SAMPLE = ("embedq.ops.evaluation", "data/retrieval")
CLUSTERING_SAMPLE = ("embedq.ops.evaluation", "data/clustering.csv")


def _packaged(package: str, name: str) -> Path:
    return Path(str(resources.files(package).joinpath(name)))


def sts_task(data: Path | None) -> tuple[Evaluator, str]:
    """STS on ``data`` or the bundled sample."""
    path = data or _packaged(*STS_SAMPLE)
    return sts_evaluator(read_pairs(path)), str(data) if data else "bundled STS-B sample"


def retrieval_task(corpus: Path | None, queries: Path | None,
                   qrels: Path | None) -> tuple[Evaluator, str]:
    """Retrieval on the user's three BEIR files (all or none), or the bundled sample."""
    given = [corpus, queries, qrels]
    if any(given) and not all(given):
        missing = [flag for flag, path in zip(("--corpus", "--queries", "--qrels"), given,
                                              strict=True) if path is None]
        raise DataFileError(Path(str(next(p for p in given if p))), None,
                            f"is given without the other BEIR files: add {', '.join(missing)}")
    if corpus and queries and qrels:
        return retrieval_evaluator(read_retrieval(corpus, queries, qrels)), str(corpus.parent)
    folder = _packaged(*RETRIEVAL_SAMPLE)
    data = read_retrieval(folder / "corpus.jsonl.gz", folder / "queries.jsonl",
                          folder / "qrels.tsv")
    return retrieval_evaluator(data), "bundled SQuAD 2.0 sample"


def clustering_task(data: Path | None) -> tuple[Evaluator, str]:
    """Clustering on ``data`` or the bundled sample."""
    path = data or _packaged(*CLUSTERING_SAMPLE)
    name = str(data) if data else "bundled Banking77 sample"
    return clustering_evaluator(read_labelled(path)), name
