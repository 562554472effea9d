"""The metric functions on vectors whose right answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from embedq.ops.evaluation.datasets import RetrievalSet
from embedq.ops.evaluation.metrics import as_float, clustering, retrieval, sts


def unit(rows: list[list[float]]) -> np.ndarray:
    return as_float(np.array(rows, dtype=np.float32), 0)


def test_sts_correlations_follow_cosine():
    first = unit([[1, 0], [1, 0], [1, 0], [1, 0]])
    second = unit([[1, 0], [1, 1], [0, 1], [-1, 0.2]])
    figures = sts(first, second, [5.0, 3.0, 1.0, 0.0])
    assert figures["spearman"] == pytest.approx(1.0)
    assert 0.9 < figures["pearson"] <= 1.0


def test_retrieval_figures_match_trec_eval_definitions():
    # q1's relevant doc ranks first; q2's ranks second of three, so MRR = (1 + 1/2) / 2.
    docs = unit([[1, 0, 0], [0, 1, 0], [0.9, 0.5, 0]])
    queries = unit([[1, 0, 0], [0.5, 0.8, 0]])
    data = RetrievalSet(["d1", "d2", "d3"], ["", "", ""], ["q1", "q2"], ["", ""],
                        {"q1": {"d1": 1}, "q2": {"d2": 1}})
    figures = retrieval(queries, docs, data)
    assert figures["mrr_at_10"] == pytest.approx(0.75)
    assert figures["recall_at_100"] == pytest.approx(1.0)
    assert figures["ndcg_at_10"] == pytest.approx((1 + 1 / np.log2(3)) / 2)


def test_clustering_of_separated_groups_is_perfect():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8, dtype=np.float32) * 10
    vectors = np.concatenate([c + rng.normal(0, 0.1, (10, 8)) for c in centres])
    labels = [name for name in ("a", "b", "c") for _ in range(10)]
    assert clustering(as_float(vectors, 8), labels)["v_measure"] == pytest.approx(1.0)


def test_as_float_unpacks_binary_and_scales_ints():
    packed = np.packbits(np.array([[1, 0, 1, 1, 0, 0, 0, 0]], dtype=np.uint8), axis=1)
    assert np.allclose(as_float(packed, 8) * np.sqrt(8), [[1, -1, 1, 1, -1, -1, -1, -1]])
    assert np.allclose(np.linalg.norm(as_float(np.array([[3, 4]], np.int8), 2)), 1.0)
