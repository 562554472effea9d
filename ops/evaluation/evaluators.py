"""The three evaluations, each a callable that embeds through a given function and scores.

Evaluators never see a model or a queue: they get ``embed(texts) -> float32 unit rows`` and
return named figures with one primary figure (sentence-transformers' evaluator shape), so the
same evaluator measures a route through the workers and a model in process, and the two can be
compared number for number. Each embeds everything it needs in one call, each distinct text once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embedq.ops.evaluation import metrics
from embedq.ops.evaluation.datasets import Labelled, Pairs, RetrievalSet

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Evaluator:
    """``task``'s figures from the vectors of ``texts`` (``score`` gets them in that order)."""

    task: str
    primary: str
    texts: list[str]
    score: Callable[[np.ndarray], dict[str, float]]

    def __call__(self, embed: Embed) -> dict[str, float]:
        """Embed the texts, then score."""
        return self.score(embed(self.texts))

    def size(self) -> int:
        """Texts this evaluation embeds."""
        return len(self.texts)


def _unique(texts: list[str]) -> tuple[list[str], list[int]]:
    """Distinct texts in first-seen order, and each input's row among them."""
    rows: dict[str, int] = {}
    index = [rows.setdefault(text, len(rows)) for text in texts]
    return list(rows), index


def sts_evaluator(pairs: Pairs) -> Evaluator:
    """Spearman (primary) and Pearson of cosine similarity against gold scores."""
    texts, index = _unique(pairs.first + pairs.second)
    half = len(pairs.first)

    def score(vectors: np.ndarray) -> dict[str, float]:
        rows = vectors[index]
        return metrics.sts(rows[:half], rows[half:], pairs.scores)

    return Evaluator("sts", "spearman", texts, score)


def retrieval_evaluator(data: RetrievalSet) -> Evaluator:
    """nDCG@10 (primary), MRR@10 and Recall@100, ranking the whole corpus by cosine."""
    queries = len(data.query_texts)

    def score(vectors: np.ndarray) -> dict[str, float]:
        return metrics.retrieval(vectors[:queries], vectors[queries:], data)

    return Evaluator("retrieval", "ndcg_at_10", data.query_texts + data.doc_texts, score)


def clustering_evaluator(data: Labelled) -> Evaluator:
    """V-measure of k-means against the labels."""
    return Evaluator("clustering", "v_measure", data.texts,
                     lambda vectors: metrics.clustering(vectors, data.labels))
