"""The Celery task's pure parts: call arguments, results without embedq, rebuildable errors."""

from __future__ import annotations

import numpy as np
import pytest
from celery import Celery

from embedq.config.errors import (
    EmbeddingFailedError,
    InvalidInputError,
    InvalidTextError,
    PayloadError,
    UnknownUseCaseError,
)
from embedq.tasks.celery_results import rebuildable, result_value, vectors_of
from embedq.tasks.embed_task import call_arguments
from embedq.tasks.schema import EmbedResult
from embedq.worker.celery_control import scaling_refusal


def _result(vectors: np.ndarray) -> EmbedResult:
    rows = len(vectors)
    return EmbedResult(id="t", model="m", revision="r", precision="fp32", dim=vectors.shape[1],
                       normalize=True, vectors=vectors, cached=[False] * rows,
                       truncated=[False] * rows, tokens=[1] * rows)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "uint8"])
@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_results_round_trip_in_both_serializers(dtype, serializer):
    vectors = (np.arange(12).reshape(3, 4) - 5).astype(dtype) / (1 if "int" in dtype else 7)
    vectors = vectors.astype(dtype)
    value = result_value(_result(vectors), serializer)
    assert isinstance(value["vectors"], list if serializer == "json" else bytes)
    got = vectors_of(value)
    assert got.dtype == vectors.dtype
    np.testing.assert_array_equal(got, vectors)
    np.testing.assert_array_equal(vectors_of([value, value]), np.concatenate([vectors] * 2))


def test_vectors_of_refuses_what_is_not_a_result():
    with pytest.raises(PayloadError, match="not an embed task result"):
        vectors_of({"rows": 1})


def test_call_arguments_take_texts_use_case_dim_only():
    assert call_arguments([["a"], "search"], {"dim": 64}) == {
        "texts": ["a"], "use_case": "search", "dim": 64}
    with pytest.raises(InvalidInputError, match="unknown argument"):
        call_arguments([["a"]], {"model_path": "/tmp/x"})
    with pytest.raises(InvalidInputError, match="both by position and by name"):
        call_arguments([["a"]], {"texts": ["b"]})
    with pytest.raises(InvalidInputError, match="at most 3"):
        call_arguments([["a"], "s", 8, "extra"], {})


@pytest.mark.parametrize("error", [
    UnknownUseCaseError("serch", ["search", "etl"]),
    InvalidTextError(2, "is empty or only whitespace"),
    EmbeddingFailedError({1: "is None; expected a string"}, None),
    PayloadError("plain message"),
])
def test_errors_come_back_as_their_class_through_celery(error):
    backend = Celery("t", backend="cache+memory://").backend
    for serializer in ("json", "msgpack"):
        stored = backend.prepare_exception(rebuildable(error), serializer)
        rebuilt = backend.exception_to_python(stored)
        assert type(rebuilt) is type(error)
        assert str(rebuilt) == str(error)


class _Worker:
    def __init__(self, **options: object) -> None:
        self.__dict__.update(options)


def test_scaling_options_are_refused_with_what_to_use():
    assert "start more workers of the queue" in scaling_refusal(_Worker(autoscale=[4, 1]))
    assert "rolling restart" in scaling_refusal(_Worker(max_tasks_per_child=10))
    assert "EMBEDQ_CACHE_MEMORY_BYTES" in scaling_refusal(_Worker(max_memory_per_child=10**6))
    assert scaling_refusal(_Worker(autoscale=None, max_tasks_per_child=None)) is None
