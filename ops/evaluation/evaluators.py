"""The three evaluations, each a callable that embeds through a given function and scores.

Evaluators never see a model or a queue: they get ``embed(texts) -> float32 unit rows`` and
return named figures with one primary figure (sentence-transformers' evaluator shape), so the
same evaluator measures a route through the workers and a model in process, and the two can be
compared number for number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embedq.ops.evaluation import metrics
from embedq.ops.evaluation.datasets import Labelled, Pairs, RetrievalSet

Embed = Callable[[list[str]], np.ndarray]


def _unique(texts: list[str]) -> tuple[list[str], list[int]]:
    """Distinct texts in first-seen order, and each input's row among them."""
    rows: dict[str, int] = {}
    index = [rows.setdefault(text, len(rows)) for text in texts]
    return list(rows), index


@dataclass(frozen=True)
class StsEvaluator:
    """Spearman (primary) and Pearson of cosine similarity against gold scores."""

    pairs: Pairs
    task = "sts"
    primary = "spearman"

    def __call__(self, embed: Embed) -> dict[str, float]:
        """Embed each distinct sentence once, then correlate."""
        texts, index = _unique(self.pairs.first + self.pairs.second)
        vectors = embed(texts)[index]
        half = len(self.pairs.first)
        return metrics.sts(vectors[:half], vectors[half:], self.pairs.scores)

    def size(self) -> int:
        """Texts this evaluation embeds."""
        return len(_unique(self.pairs.first + self.pairs.second)[0])


@dataclass(frozen=True)
class RetrievalEvaluator:
    """nDCG@10 (primary), MRR@10 and Recall@100 over the whole corpus."""

    data: RetrievalSet
    task = "retrieval"
    primary = "ndcg_at_10"

    def __call__(self, embed: Embed) -> dict[str, float]:
        """Embed queries and corpus, rank by cosine."""
        return metrics.retrieval(embed(self.data.query_texts), embed(self.data.doc_texts),
                                 self.data)

    def size(self) -> int:
        """Texts this evaluation embeds."""
        return len(self.data.query_texts) + len(self.data.doc_texts)


@dataclass(frozen=True)
class ClusteringEvaluator:
    """V-measure of k-means against the labels."""

    data: Labelled
    task = "clustering"
    primary = "v_measure"

    def __call__(self, embed: Embed) -> dict[str, float]:
        """Embed the texts, cluster, compare with the labels."""
        return metrics.clustering(embed(self.data.texts), self.data.labels)

    def size(self) -> int:
        """Texts this evaluation embeds."""
        return len(self.data.texts)


Evaluator = StsEvaluator | RetrievalEvaluator | ClusteringEvaluator
