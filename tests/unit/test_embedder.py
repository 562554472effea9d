"""The worker's model step and request handling, on the deterministic hashing model."""

from __future__ import annotations

import numpy as np
import pytest

from embedq.config import OutputDtype, Settings, load_registry
from embedq.config.errors import ModelUnavailableError, PayloadError
from embedq.tasks import EmbedRequest, EmbedResult
from embedq.worker.batching import PassPolicy
from embedq.worker.embedder import postprocess
from embedq.worker.loaded_models import LoadedModels
from embedq.worker.service import EmbedService


def test_batches_respect_token_budget_and_size():
    counts = [10, 300, 12, 11, 250, 9, 10]
    batches = PassPolicy(max_tokens=520, max_texts=3).plan(counts, truncate_at=256)
    assert sorted(i for b in batches for i in b) == list(range(len(counts)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) * min(max(counts[i] for i in batch), 256) <= 520 or len(batch) == 1
    assert batches[0] == [1, 4]  # the two long texts together (2 x 256 <= 520), first


def test_batches_of_equal_short_texts_fill_to_size():
    assert [len(b) for b in PassPolicy(max_tokens=10_000, max_texts=4).plan(
        [5] * 10, truncate_at=256)] == [4, 4, 2]


def test_postprocess_truncates_then_normalises_then_casts():
    vectors = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    out = postprocess(vectors, dim=2, normalize=True, output_dtype=OutputDtype.FLOAT16)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-3)
    np.testing.assert_array_equal(out[1], [0, 0])  # a zero vector stays zero, no NaN


@pytest.fixture
def service(hashing_config):
    registry = load_registry(hashing_config)
    settings = Settings(config_dir=hashing_config, max_text_chars=1000)
    return EmbedService(registry, settings, LoadedModels(registry, settings))


def _request(texts, **overrides) -> EmbedRequest:
    fields = {"route": "fast", "model": "hashing", "precision": "fp32", "dim": 64,
              "normalize": True, "output_dtype": "float32", **overrides}
    return EmbedRequest(texts=texts, **fields)


def test_same_text_same_vector_across_requests(service):
    a, b = service.handle([_request(["hello world", "other"]),
                           _request(["x", "hello world"])]).outcomes
    assert isinstance(a, EmbedResult)
    assert isinstance(b, EmbedResult)
    np.testing.assert_array_equal(a.vectors[0], b.vectors[1])
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, rtol=1e-6)


def test_one_bad_item_keeps_the_others(service):
    (result,) = service.handle([_request(["fine", "", None, 7, "also fine", "\ud800"])]).outcomes
    assert isinstance(result, EmbedResult)
    assert [i for i, _ in result.errors] == [1, 2, 3, 5]
    assert "empty" in dict(result.errors)[1]
    assert "lone surrogate" in dict(result.errors)[5]
    good = result.vectors[[0, 4]]
    assert np.isfinite(good).all()
    assert np.isnan(result.vectors[[1, 2, 3, 5]]).all()


def test_bad_request_fails_alone(service):
    outcomes = service.handle([
        _request(["a"], model="nope"),
        _request(["b"], dim=10_000),
        _request(["c"], output_dtype="float64"),
        _request(["d"]),
    ]).outcomes
    assert [type(o) for o in outcomes] == [PayloadError, PayloadError, PayloadError, EmbedResult]
    assert "unknown model 'nope'" in str(outcomes[0])
    assert "outside 1..64" in str(outcomes[1])


def test_truncation_is_flagged_not_an_error(service):
    (result,) = service.handle([_request(["word " * 100, "short"])]).outcomes
    assert result.truncated == [True, False]
    assert result.tokens == [102, 3]


def test_unloadable_model_fails_every_request_for_it(tmp_path):
    from tests.support import write_config

    folder = write_config(
        tmp_path,
        {"ghost": {"source": {"kind": "package", "package": "no_such_pkg",
                              "distribution": "no-such-pkg"}, "dim": 64, "max_tokens": 32}},
        {"r": {"model": "ghost"}}, default="r")
    registry = load_registry(folder)
    settings = Settings(config_dir=folder)
    service = EmbedService(registry, settings, LoadedModels(registry, settings))
    outcomes = service.handle([_request(["a"], model="ghost", dim=64)] * 2).outcomes
    assert all(isinstance(o, ModelUnavailableError) for o in outcomes)
    assert "pip install no-such-pkg" in str(outcomes[0])


def test_a_halt_stops_before_the_next_pass_and_names_the_unfinished(hashing_config):
    registry = load_registry(hashing_config)
    settings = Settings(config_dir=hashing_config, max_text_chars=1000, max_batch_size=2)
    service = EmbedService(registry, settings, LoadedModels(registry, settings))
    requests = [_request(["one two"]), _request(["three four", "five six"]),
                _request(["seven eight"])]
    whole = service.handle(requests)
    assert whole.unfinished == frozenset()
    asked: list[int] = []

    def after_one_pass() -> bool:  # asked before each pass
        asked.append(1)
        return len(asked) > 1

    halted = service.handle(requests, after_one_pass)
    assert len(asked) == 2  # no third question: once halted, no pass starts
    # Pass one held "one two" and "three four": only the first request is complete.
    assert halted.unfinished == frozenset({1, 2})
    np.testing.assert_array_equal(halted.outcomes[0].vectors, whole.outcomes[0].vectors)
    assert service.handle(requests, lambda: True).unfinished == frozenset({0, 1, 2})
