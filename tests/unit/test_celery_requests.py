"""How an embed worker reads a Celery producer's message: a short call resolved by its own
routes, a use case of another queue refused, eta refused, a full request read as before."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from embedq.config.errors import InvalidInputError, PayloadError, UnknownUseCaseError
from embedq.config.registry import load_registry
from embedq.tasks import EMBED_TASK, EmbedRequest
from embedq.tasks.wire import open_envelope
from embedq.worker.celery_requests import message_reader
from tests.support import HASHING_MODEL, write_config


@pytest.fixture
def registry(tmp_path: Path):
    other = {**HASHING_MODEL}
    config = write_config(tmp_path, {"hashing": HASHING_MODEL, "other": other},
                          {"fast": {"model": "hashing", "precision": "fp32"},
                           "elsewhere": {"model": "other", "precision": "fp32"}},
                          default="fast")
    return load_registry(config)


def _message(args, kwargs, **headers):
    body = json.dumps([args, kwargs, {"callbacks": None, "errbacks": None, "chain": None,
                                      "chord": None}]).encode()
    envelope = {"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": {"lang": "py", "task": EMBED_TASK, "id": "t-1", "eta": None,
                            "expires": None, **headers},
                "properties": {"body_encoding": "base64", "delivery_info": {
                    "exchange": "", "routing_key": "embed.hashing.fp32"}}}
    return open_envelope(json.dumps(envelope).encode())


def test_a_short_call_is_resolved_by_the_workers_routes(registry):
    read = message_reader(registry, "embed.hashing.fp32", 1000)
    request = read(_message([["a", "b"]], {"use_case": "fast", "dim": 32}))
    assert (request.model, request.precision, request.dim, request.id) == (
        "hashing", "fp32", 32, "t-1")
    assert read(_message([["a"]], {})).route == "fast"  # the default route


def test_refusals_name_the_problem(registry):
    read = message_reader(registry, "embed.hashing.fp32", 1000)
    with pytest.raises(PayloadError, match=r"served on queue embed\.other\.fp32"):
        read(_message([["a"]], {"use_case": "elsewhere"}))
    with pytest.raises(UnknownUseCaseError, match="known: elsewhere, fast"):
        read(_message([["a"]], {"use_case": "nope"}))
    with pytest.raises(InvalidInputError, match="unknown argument"):
        read(_message([["a"]], {"model": "hashing"}))
    with pytest.raises(InvalidInputError, match="dim 12 is not offered"):
        read(_message([["a"]], {"dim": 12}))
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    with pytest.raises(PayloadError, match="hold nothing until later"):
        read(_message([["a"]], {}, eta=later))


def test_a_full_request_is_read_as_before(registry):
    read = message_reader(registry, "embed.hashing.fp32", 1000)
    full = EmbedRequest(texts=["x"], route="fast", model="hashing", precision="fp32", dim=64,
                        normalize=True, output_dtype="float32", id="t-1")
    assert read(_message([full.to_wire()], {})) == full
