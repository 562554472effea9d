"""The quality figures, computed by well-kept libraries from vectors, never from a model.

scipy gives the correlations, scikit-learn k-means and V-measure, and pytrec_eval the ranking
measures exactly as trec_eval defines them (nDCG@10 and Recall@100 over the top 100 of the whole
corpus, MRR@10 as reciprocal rank over the top 10), so the figures compare with published ones.
Every function takes float32 vectors; `as_float` turns any route's output dtype into those.
"""

from __future__ import annotations

import numpy as np
import pytrec_eval
from scipy.stats import pearsonr, spearmanr
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

from embedq.ops.evaluation.datasets import RetrievalSet

RANKED = 100  # documents kept per query: enough for Recall@100
_SEED = 0


def as_float(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Float32 rows of unit length from float, int8 or packed-binary (uint8) output vectors."""
    if vectors.dtype == np.uint8:  # one sign bit per dimension, packed eight to a byte
        vectors = np.unpackbits(vectors, axis=1)[:, :dim].astype(np.float32) * 2.0 - 1.0
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def sts(first: np.ndarray, second: np.ndarray, gold: list[float]) -> dict[str, float]:
    """Spearman and Pearson correlation of each pair's cosine similarity with its gold score."""
    cosines = np.sum(first * second, axis=1)
    return {"spearman": float(spearmanr(cosines, gold).statistic),
            "pearson": float(pearsonr(cosines, gold).statistic)}


def _run(scores: np.ndarray, data: RetrievalSet, depth: int) -> dict[str, dict[str, float]]:
    """trec_eval's run: each query's ``depth`` best documents with their cosine."""
    top = np.argpartition(-scores, min(depth, scores.shape[1] - 1), axis=1)[:, :depth]
    return {
        query: {data.doc_ids[j]: float(scores[i, j]) for j in top[i]}
        for i, query in enumerate(data.query_ids)
    }


def _mean(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
          measure: str, key: str) -> float:
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(run)
    return float(np.mean([figures[key] for figures in per_query.values()]))


def retrieval(queries: np.ndarray, docs: np.ndarray, data: RetrievalSet) -> dict[str, float]:
    """nDCG@10, MRR@10 and Recall@100 of ranking the whole corpus by cosine, per query."""
    scores = queries @ docs.T
    deep = _run(scores, data, RANKED)
    shallow = {query: dict(sorted(docs_.items(), key=lambda kv: -kv[1])[:10])
               for query, docs_ in deep.items()}
    return {
        "ndcg_at_10": _mean(deep, data.qrels, "ndcg_cut.10", "ndcg_cut_10"),
        "mrr_at_10": _mean(shallow, data.qrels, "recip_rank", "recip_rank"),
        "recall_at_100": _mean(deep, data.qrels, "recall.100", "recall_100"),
    }


def clustering(vectors: np.ndarray, labels: list[str]) -> dict[str, float]:
    """V-measure of k-means (k = the number of labels, fixed seed) against the labels."""
    k = len(set(labels))
    found = KMeans(n_clusters=k, n_init=10, random_state=_SEED).fit_predict(vectors)
    return {"v_measure": float(v_measure_score(labels, found))}
