"""The contract: names, the wire schema and the vector codec."""

from __future__ import annotations

import ssl

import msgpack
import numpy as np
import pytest

from embedq.config import Settings, load_registry
from embedq.config.errors import ConfigError, PayloadError
from embedq.tasks import EmbedRequest, EmbedResult, route_queue
from embedq.tasks.app import create_app
from embedq.tasks.codec import decode_vectors, encode_vectors
from embedq.tasks.names import cache_key, parse_queue, queue_name, vector_space


def test_queue_names_round_trip():
    assert queue_name("minilm", "fp32") == "embed.minilm.fp32"
    assert parse_queue("embed.minilm.fp32") == ("minilm", "fp32")
    assert parse_queue("celery") is None
    assert route_queue(load_registry().route("search")) == "embed.minilm.fp32"


def test_cache_keys_separate_vector_spaces():
    common = {"revision": "r1", "precision": "fp32", "dim": 384, "normalize": True,
              "output_dtype": "float32", "max_tokens": 256}
    a = cache_key("minilm", vector_space(model="minilm", **common), "hello")
    b = cache_key("mpnet", vector_space(model="mpnet", **common), "hello")
    c = cache_key("minilm", vector_space(model="minilm", **{**common, "dim": 128}), "hello")
    assert len({a, b, c}) == 3
    assert a.startswith("embedq:v1:vec:minilm:")


def _result(vectors: np.ndarray) -> EmbedResult:
    n = len(vectors)
    return EmbedResult(id="r", model="m", revision="rev", precision="fp32", dim=vectors.shape[1],
                       normalize=True, vectors=vectors, cached=[False] * n,
                       truncated=[False] * n, tokens=[3] * n, errors=[(1, "bad")])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_result_survives_msgpack(dtype):
    vectors = np.random.default_rng(0).normal(size=(5, 16)).astype(dtype)
    wire = msgpack.unpackb(msgpack.packb(_result(vectors).to_wire()))
    assert isinstance(wire["vectors"], bytes)  # raw binary, never a list of floats
    back = EmbedResult.from_wire(wire)
    np.testing.assert_array_equal(back.vectors, vectors)
    assert back.vectors.dtype == np.dtype(dtype)
    assert back.errors == [(1, "bad")]


def test_request_round_trip_and_version_check():
    request = EmbedRequest(texts=["a"], route="r", model="m", precision="fp32", dim=8,
                           normalize=True, output_dtype="float32")
    assert EmbedRequest.from_wire(msgpack.unpackb(msgpack.packb(request.to_wire()))) == request
    with pytest.raises(PayloadError, match="schema version 99"):
        EmbedRequest.from_wire({**request.to_wire(), "v": 99})
    with pytest.raises(PayloadError, match="'texts' must be list"):
        EmbedRequest.from_wire({**request.to_wire(), "texts": "a"})
    with pytest.raises(PayloadError, match="must be a map"):
        EmbedRequest.from_wire(["not", "a", "map"])


def test_corrupt_vectors_are_a_payload_error():
    wire = _result(np.ones((2, 4), dtype=np.float32)).to_wire()
    with pytest.raises(PayloadError, match="not valid zstd"):
        decode_vectors(b"garbage", "float32", (2, 4))
    with pytest.raises(PayloadError, match="expected 3x4"):
        decode_vectors(wire["vectors"], "float32", (3, 4))
    with pytest.raises(PayloadError, match="malformed"):
        EmbedResult.from_wire({**wire, "shape": None})
    with pytest.raises(PayloadError, match="cannot encode"):
        encode_vectors(np.ones(3, dtype=np.float64))


def test_app_never_accepts_pickle_and_sets_nothing_its_consumer_ignores():
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert "pickle" not in app.conf.accept_content
    assert "pickle" not in app.conf.result_accept_content
    assert app.conf.task_serializer == app.conf.result_serializer == "msgpack"
    # embedq's consumer, not Celery's, takes the messages: these would only mislead.
    assert not app.conf.task_acks_late
    assert not app.conf.task_reject_on_worker_lost


def test_rediss_url_verifies_certificates_by_default():
    verify = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    app = create_app(Settings(redis_url="rediss://:pw@redis.example:6380/0"))
    assert app.conf.broker_use_ssl == verify
    assert app.conf.redis_backend_use_ssl == verify
    explicit = create_app(Settings(redis_url="rediss://h:6380/0?ssl_cert_reqs=none"))
    assert explicit.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_NONE,
                                            "ssl_check_hostname": False}


def test_tls_files_go_to_celery_as_options_never_in_its_urls():
    files = ("ssl_ca_certs=%2Fetc%2Fca.crt&ssl_certfile=%2Fetc%2Fc.crt&ssl_keyfile=%2Fetc%2Fc.key"
             "&ssl_check_hostname=false")
    app = create_app(Settings(redis_url=f"rediss://u:pw@h:6380/0?{files}"))
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": False,
                "ssl_ca_certs": "/etc/ca.crt", "ssl_certfile": "/etc/c.crt",
                "ssl_keyfile": "/etc/c.key"}
    assert app.conf.broker_use_ssl == app.conf.redis_backend_use_ssl == expected
    assert "ssl_" not in app.conf.broker_url
    assert "ssl_" not in app.conf.result_backend
    with pytest.raises(ConfigError, match="ssl_cert_reqs='maybe'"):
        create_app(Settings(redis_url="rediss://h:6380/0?ssl_cert_reqs=maybe"))
    assert create_app(Settings(redis_url="redis://h:6379/0")).conf.broker_use_ssl is None
