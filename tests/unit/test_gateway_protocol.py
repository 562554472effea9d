"""The gateway's request parsing, error table and key check, without a server or Redis.

What a client sends wrong is refused with the field it wrote (``input[2]``) and the fix; the
integration tests check the same refusals over HTTP with real clients.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import orjson
import pytest

from embedq.config import Settings
from embedq.config.errors import (
    BrokerUnavailableError,
    ConfigError,
    EmbedTimeoutError,
    NoLiveWorkerError,
    OverloadedError,
    UnknownUseCaseError,
)
from embedq.gateway.auth import KeyCheck, is_loopback
from embedq.gateway.errors import (
    ApiKeyError,
    InvalidFieldError,
    RequestTooLargeError,
    error_response,
    refusal_of,
)
from embedq.gateway.protocol import EmbeddingsRequest, parse_request, response_body
from embedq.tasks.vectors import to_float32


def _parse(payload: object, max_inputs: int = 8, max_chars: int = 50) -> EmbeddingsRequest:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_request(raw, max_inputs=max_inputs, max_chars=max_chars)


def test_a_string_or_a_list_of_strings_with_the_optional_fields():
    one = _parse({"input": "red shoes", "model": "search"})
    assert (one.texts, one.use_case, one.encoding_format, one.dimensions) == (
        ["red shoes"], "search", "float", None)
    many = _parse({"input": ["a", "b"], "model": "etl", "encoding_format": "base64",
                   "dimensions": 256, "user": "someone"})
    assert (many.texts, many.encoding_format, many.dimensions) == (["a", "b"], "base64", 256)
    assert _parse({"input": "a", "model": "m", "encoding_format": None, "dimensions": None,
                   "user": None}).encoding_format == "float"


@pytest.mark.parametrize(("payload", "field", "message"), [
    (b"\xff\xfe{}", "body", r"not valid UTF-8 \(byte 0xff at offset 0\)"),
    (b'{"input": "a", "model": "x"', "body", r"not valid JSON .* line 1"),
    ([1, 2], "body", "must be a JSON object .* got array"),
    ({"input": "a", "model": "m", "temperature": 1}, "temperature", "unknown field 'temperature'"),
    ({"input": "a"}, "model", "model must be the name of an embedq use case .* got null"),
    ({"input": "a", "model": 7}, "model", "got number"),
    ({"input": "a", "model": "m", "encoding_format": "int8"}, "encoding_format", "'float' or"),
    ({"input": "a", "model": "m", "dimensions": "64"}, "dimensions", "positive whole number"),
    ({"input": "a", "model": "m", "dimensions": True}, "dimensions", "positive whole number"),
    ({"input": "a", "model": "m", "dimensions": 0}, "dimensions", "positive whole number"),
    ({"input": "a", "model": "m", "user": 5}, "user", "user must be a string"),
    ({"model": "m"}, "input", "a string or a list of strings, got null"),
    ({"input": {"text": "a"}, "model": "m"}, "input", "got object"),
    ({"input": [], "model": "m"}, "input", "empty list"),
    ({"input": "", "model": "m"}, "input", "input is empty or only whitespace"),
    ({"input": ["ok", "  "], "model": "m"}, "input[1]", r"input\[1\] is empty"),
    ({"input": ["ok", None], "model": "m"}, "input[1]", r"input\[1\] is null, not a string"),
    ({"input": ["ok", ["a"]], "model": "m"}, "input[1]", "is array, not a string"),
    ({"input": ["ok", 5], "model": "m"}, "input[1]", "is number, not a string"),
    ({"input": ["x" * 51], "model": "m"}, "input[0]", "51 characters, more than the limit"),
    ({"input": "\ud800", "model": "m"}, "input", "lone surrogate"),
    ({"input": [1, 2, 3], "model": "m"}, "input", "token ids; embedq takes text"),
    ({"input": [[1, 2], [3]], "model": "m"}, "input", "check_embedding_ctx_length=False"),
])
def test_bad_requests_name_the_field_and_the_fix(payload, field, message):
    with pytest.raises(InvalidFieldError, match=message) as caught:
        _parse(payload)
    assert caught.value.field == field
    assert refusal_of(caught.value).status == 400


def test_too_many_texts_is_413_naming_the_setting():
    with pytest.raises(RequestTooLargeError, match="EMBEDQ_GATEWAY_MAX_INPUTS") as caught:
        _parse({"input": ["a"] * 9, "model": "m"})
    assert refusal_of(caught.value).status == 413


def test_response_body_in_both_encodings():
    vectors = np.array([[0.5, -0.25], [1.0, 0.0]], dtype=np.float32)
    floats = orjson.loads(response_body(_parse({"input": ["a", "b"], "model": "m"}), vectors,
                                        [3, 4]))
    assert floats["data"][1] == {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}
    assert floats["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert floats["model"] == "m"
    encoded = orjson.loads(response_body(
        _parse({"input": ["a", "b"], "model": "m", "encoding_format": "base64"}), vectors, [1, 1]))
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert decoded.tolist() == [0.5, -0.25]


def test_every_output_dtype_leaves_as_float32():
    assert to_float32(np.array([[1, -2]], dtype=np.int8), "int8", 2).tolist() == [[1.0, -2.0]]
    half = to_float32(np.array([[0.5, 1.0]], dtype=np.float16), "float16", 2)
    assert half.dtype == np.float32
    assert half.tolist() == [[0.5, 1.0]]
    bits = to_float32(np.packbits(np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1, 0]], np.uint8), axis=1),
                      "binary", 10)
    assert bits.tolist() == [[1, -1, 1, 1, -1, -1, -1, -1, 1, -1]]


@pytest.mark.parametrize(("error", "status", "code"), [
    (ApiKeyError("no key"), 401, "invalid_api_key"),
    (UnknownUseCaseError("serch", ["search"]), 404, "model_not_found"),
    (OverloadedError("busy"), 429, "overloaded"),
    (NoLiveWorkerError("none"), 503, "no_live_worker"),
    (BrokerUnavailableError("down"), 503, "broker_unavailable"),
    (EmbedTimeoutError("slow"), 504, "timeout"),
    (RuntimeError("secret detail"), 500, "internal_error"),
])
def test_errors_become_openai_shaped_answers(error, status, code):
    response = error_response(error, "req1")
    body = orjson.loads(response.body)
    assert response.status_code == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert ("retry-after" in response.headers) == (status in (429, 503))
    assert "secret detail" not in body["error"]["message"]  # internals stay in the log


def test_unknown_model_points_at_the_model_field_and_the_list():
    body = orjson.loads(error_response(UnknownUseCaseError("ada", ["etl", "search"]), "r").body)
    assert body["error"]["param"] == "model"
    assert "known: etl, search (GET /v1/models" in body["error"]["message"]


def test_keys_are_required_beyond_loopback_and_checked_in_the_header(tmp_path):
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("example.org")
    assert not KeyCheck.for_host(Settings(), "127.0.0.1").required
    with pytest.raises(ConfigError, match="EMBEDQ_GATEWAY_API_KEYS"):
        KeyCheck.for_host(Settings(), "0.0.0.0")
    keys_file = tmp_path / "keys"
    keys_file.write_text("# ops team\nfile-key\n\n")
    check = KeyCheck.for_host(Settings(gateway_api_keys="k1, k2",  # type: ignore[arg-type]
                                       gateway_api_keys_file=keys_file), "0.0.0.0")
    for header in ("Bearer k1", "bearer k2", "Bearer file-key"):
        check.check(header)
    for header in (None, "", "Bearer", "Basic k1", "Bearer k3", "Bearer # ops team"):
        with pytest.raises(ApiKeyError):
            check.check(header)


def test_a_keys_file_without_keys_is_a_config_error(tmp_path):
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="holds no key"):
        KeyCheck.for_host(Settings(gateway_api_keys_file=empty), "127.0.0.1")
    with pytest.raises(ConfigError, match="cannot read"):
        KeyCheck.for_host(Settings(gateway_api_keys_file=tmp_path / "missing"), "127.0.0.1")
