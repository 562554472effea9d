"""Prompts per route: what a route may name, what a request may pick, and what reaches the wire
and the cache key (the vectors themselves are checked against sentence-transformers in
tests/integration/test_prompts.py)."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest

from embedq.config import load_registry
from embedq.config.errors import ConfigError, InvalidInputError
from embedq.config.prompts import Prompt, resolve_prompt, route_default
from embedq.gateway.errors import InvalidFieldError
from embedq.gateway.protocol import check_prompt, parse_request
from embedq.tasks import EmbedRequest
from embedq.tasks.cache_codec import ModelInfo
from embedq.tasks.names import vector_space
from tests.support import HASHING_MODEL, write_config

PROMPTED = {**HASHING_MODEL, "prompts": {"query": "query: ", "passage": "passage: "}}


def _registry(tmp_path, routes, model=PROMPTED):
    return load_registry(write_config(tmp_path, {"hashing": model}, routes,
                                      default=next(iter(routes))))


def test_route_prompt_text_name_and_the_model_default(tmp_path):
    registry = _registry(tmp_path, {
        "text": {"model": "hashing", "prompt": "Represent this: "},
        "named": {"model": "hashing", "prompt_name": "passage"},
        "plain": {"model": "hashing"},
    })
    model = registry.model("hashing")
    assert route_default(registry.route("text"), model) == Prompt("Represent this: ")
    assert route_default(registry.route("named"), model) == Prompt("passage: ", "passage")
    assert route_default(registry.route("plain"), model) == Prompt()
    # A model's default_prompt_name applies where the route names none, as in encode().
    with_default = {**PROMPTED, "default_prompt_name": "query"}
    registry = _registry(tmp_path, {"plain": {"model": "hashing"}}, with_default)
    assert route_default(registry.route("plain"), registry.model("hashing")) == Prompt(
        "query: ", "query")


@pytest.mark.parametrize(("route", "message"), [
    ({"prompt": "a: ", "prompt_name": "query"}, "not both"),
    ({"prompt_name": "qeury"}, "routes.r.prompt_name: model hashing has no prompt 'qeury'; "
                               "its prompts: passage, query"),
    ({"prompt_names": ["query", "doc"]}, "prompt_names: model hashing has no prompt 'doc'"),
])
def test_bad_route_prompts_stop_the_load(tmp_path, route, message):
    with pytest.raises(ConfigError, match=message):
        _registry(tmp_path, {"r": {"model": "hashing", **route}})


def test_model_default_prompt_must_be_one_of_its_prompts(tmp_path):
    with pytest.raises(ConfigError, match="default_prompt_name 'doc' is not one of prompts"):
        _registry(tmp_path, {"r": {"model": "hashing"}},
                  {**PROMPTED, "default_prompt_name": "doc"})


def test_a_request_picks_only_what_the_route_allows(tmp_path):
    registry = _registry(tmp_path, {
        "search": {"model": "hashing", "prompt_name": "query", "prompt_names": ["passage"]},
        "open": {"model": "hashing", "allow_prompt_text": True},
    })
    model = registry.model("hashing")
    search, open_route = registry.route("search"), registry.route("open")
    assert resolve_prompt(search, model, prompt_name="passage") == Prompt("passage: ", "passage")
    assert resolve_prompt(search, model, prompt_name="query") == Prompt("query: ", "query")
    with pytest.raises(InvalidInputError, match="offers no prompt_name 'other'; it offers: "
                                                "query, passage"):
        resolve_prompt(search, model, prompt_name="other")
    with pytest.raises(InvalidInputError, match="does not take prompt text"):
        resolve_prompt(search, model, prompt="Ignore the text; ")
    assert resolve_prompt(open_route, model, prompt="mine: ") == Prompt("mine: ")
    with pytest.raises(InvalidInputError, match="offers no prompt_name 'query'; it offers: none"):
        resolve_prompt(open_route, model, prompt_name="query")


def test_the_prompt_travels_and_old_messages_still_read():
    request = EmbedRequest(texts=["a"], route="r", model="m", precision="fp32", dim=8,
                           normalize=True, output_dtype="float32", prompt="query: ",
                           deadlines=[1234.5])  # issue 19's deadlines travel beside it
    assert EmbedRequest.from_wire(msgpack.unpackb(msgpack.packb(request.to_wire()))) == request
    old = request.to_wire()
    del old["prompt"]  # what a producer of before prompts sends
    assert (EmbedRequest.from_wire(old).prompt, EmbedRequest.from_wire(old).deadlines) == (
        "", [1234.5])


def test_the_prompt_is_part_of_the_cache_key_and_no_prompt_keeps_the_old_keys():
    info = ModelInfo("rev", 256, "fp32")
    base = EmbedRequest(texts=["a"], route="r", model="m", precision="fp32", dim=8,
                        normalize=True, output_dtype="float32")
    spaces = {info.space(replace(base, prompt=prompt)) for prompt in ("", "query: ", "passage: ")}
    assert len(spaces) == 3
    assert info.space(base) == vector_space(model="m", revision="rev", precision="fp32", dim=8,
                                            normalize=True, output_dtype="float32",
                                            max_tokens=256)


def test_gateway_reads_the_prompt_fields_and_names_them_in_refusals(tmp_path):
    registry = _registry(tmp_path, {"search": {"model": "hashing", "prompt_names": ["query"]}})
    parsed = parse_request(b'{"input": "x", "model": "search", "prompt_name": "query"}',
                           max_inputs=8, max_chars=100)
    assert parsed.prompt_name == "query"
    check_prompt(registry, registry.route("search"), parsed)
    free = parse_request(b'{"input": "x", "model": "search", "prompt": "do as I say: "}',
                         max_inputs=8, max_chars=100)
    with pytest.raises(InvalidFieldError, match="does not take prompt text") as caught:
        check_prompt(registry, registry.route("search"), free)
    assert caught.value.field == "prompt"
    with pytest.raises(InvalidFieldError, match="prompt_name must be a string"):
        parse_request(b'{"input": "x", "model": "search", "prompt_name": 3}', max_inputs=8,
                      max_chars=100)
