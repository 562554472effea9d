"""Prompts per route with the real MiniLM and mpnet: every encoder, the producer, the gateway
and a corpus job give what ``SentenceTransformer.encode(texts, prompt=...)`` gives, token counts
and truncation included; routes of one model with different prompts share its queue and worker,
never a cached vector."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from embedq.config import Settings, load_registry
from embedq.config.errors import InvalidInputError
from embedq.producer.corpus import embed_file
from embedq.tasks.names import route_queue
from tests.support import make_client, wait_for_consumers, write_config

pytestmark = pytest.mark.model

PACKAGED = json.loads(resources.files("embedq.config").joinpath("models.json").read_text())
QUERY, PASSAGE = "query: ", "passage: "
INSTRUCT = "Represent this sentence for searching relevant passages: "
TEXTS = [
    "A man is playing a guitar.",
    "Where can I buy running shoes near the station?",
    "Stocks fell sharply on Monday after the central bank raised rates.",
    "word " * 400,  # past max_tokens with the prompt: truncated from the end, as in ST
]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    models = PACKAGED["models"]
    return write_config(
        tmp_path_factory.mktemp("prompt-config"),
        {"minilm": {**models["minilm"], "prompts": {"query": QUERY, "passage": PASSAGE}},
         "mpnet": {**models["mpnet"], "prompts": {"instruct": INSTRUCT}}},
        {"search": {"model": "minilm", "prompt_name": "query", "prompt_names": ["passage"]},
         "index": {"model": "minilm", "prompt": PASSAGE},
         "plain": {"model": "minilm"},
         "open": {"model": "minilm", "allow_prompt_text": True},
         "deep": {"model": "mpnet", "prompt": INSTRUCT}},
        default="search",
    )


@pytest.fixture(scope="module")
def reference(config):
    """In-process sentence-transformers models, loaded once."""
    from sentence_transformers import SentenceTransformer

    from embedq.worker.models.sources import resolve_source

    registry, settings = load_registry(config), Settings(config_dir=config)
    return {name: SentenceTransformer(resolve_source(registry.model(name),
                                                     settings.model_cache_dir).location,
                                      device="cpu")
            for name in ("minilm", "mpnet")}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


def _tokens(model, prompt: str, texts: list[str]) -> list[int]:
    return [len(ids) for ids in model.tokenizer([prompt + t for t in texts])["input_ids"]]


@pytest.mark.parametrize(("model", "candidate", "prompt"), [
    ("minilm", "torch-fp32", QUERY), ("minilm", "onnx-fp32", QUERY),
    ("minilm", "onnx-int8", QUERY), ("mpnet", "torch-fp32", INSTRUCT),
    ("mpnet", "onnx-fp32", INSTRUCT),
])
def test_every_encoder_embeds_a_prompt_as_sentence_transformers(config, reference, model,
                                                                candidate, prompt):
    from embedq.worker.batching import PassPolicy
    from embedq.worker.embedder import Embedder
    from embedq.worker.models.candidates import Candidate
    from embedq.worker.models.selection import build
    from embedq.worker.models.sources import resolve_source

    registry, settings = load_registry(config), Settings(config_dir=config)
    spec = registry.model(model)
    encoder = build(spec, resolve_source(spec, settings.model_cache_dir), settings,
                    Candidate.parse(candidate), 1)
    got = Embedder(encoder, PassPolicy(4096, 32)).encode(TEXTS, prompt=prompt)
    want = reference[model].encode(TEXTS, prompt=prompt)
    assert got.tokens == _tokens(reference[model], prompt, TEXTS)
    assert got.truncated == [False, False, False, True]
    if candidate == "onnx-int8":  # int8 is its own space: the prompt goes in the same way
        # (dynamic int8 scales each pass's activations by that pass: compare pass by pass)
        alone = np.empty_like(got.vectors)
        for rows in PassPolicy(4096, 32).plan(got.tokens, truncate_at=encoder.max_tokens):
            alone[rows] = encoder.encode_batch([prompt + TEXTS[i] for i in rows])
        np.testing.assert_allclose(got.vectors, alone, atol=1e-5)
        assert _cosines(got.vectors, want).mean() >= 0.98
    else:
        assert _cosines(got.vectors, want).min() >= 0.9999
    # The prompt changes the vectors (else this test would prove nothing).
    assert _cosines(got.vectors, reference[model].encode(TEXTS)).min() < 0.999


@pytest.fixture(scope="module")
def client(redis_server, start_worker, config):
    start_worker("minilm", "fp32", config, "-P", "solo")
    start_worker("mpnet", "fp32", config, "-P", "solo")
    wait_for_consumers(redis_server.url, "embed.minilm.fp32", timeout=300)
    wait_for_consumers(redis_server.url, "embed.mpnet.fp32", timeout=300)
    with make_client(redis_server.url, config) as made:
        yield made


def test_routes_with_prompts_through_the_producer(client, reference):
    search = client.embed_detailed(TEXTS, "search", timeout=180)
    assert _cosines(search.vectors, reference["minilm"].encode(TEXTS, prompt=QUERY)).min() >= (
        0.9999)
    assert (search.prompt, search.prompt_name) == (QUERY, "query")
    assert search.tokens == _tokens(reference["minilm"], QUERY, TEXTS)
    deep = client.embed_detailed(TEXTS, "deep", timeout=180)
    assert _cosines(deep.vectors, reference["mpnet"].encode(TEXTS, prompt=INSTRUCT)).min() >= (
        0.9999)
    assert deep.truncated == [False, False, False, True]
    # A request picks a name the route offers, or text where the route takes text.
    picked = client.embed_detailed(TEXTS[:2], "search", prompt_name="passage", timeout=180)
    assert _cosines(picked.vectors, reference["minilm"].encode(TEXTS[:2], prompt=PASSAGE)
                    ).min() >= 0.9999
    own = client.embed(TEXTS[:2], "open", prompt="title: ", timeout=180)
    assert _cosines(own, reference["minilm"].encode(TEXTS[:2], prompt="title: ")).min() >= (
        0.9999)
    with pytest.raises(InvalidInputError, match="does not take prompt text"):
        client.embed(TEXTS[:1], "search", prompt="Ignore the text; ")
    with pytest.raises(InvalidInputError, match="offers no prompt_name 'instruct'"):
        client.embed(TEXTS[:1], "search", prompt_name="instruct")


def test_two_prompts_share_the_worker_pool_never_a_cache_entry(client, reference):
    registry = client.registry
    assert route_queue(registry.route("search")) == route_queue(registry.route("index")) == (
        route_queue(registry.route("plain")))  # one queue, so one pool, for all three
    text = ["a text first embedded for the search route"]
    first = client.embed_detailed(text, "search", timeout=180)
    index = client.embed_detailed(text, "index", timeout=180)
    plain = client.embed_detailed(text, "plain", timeout=180)
    again = client.embed_detailed(text, "search", timeout=180)
    assert (first.cached, index.cached, plain.cached, again.cached) == (
        [False], [False], [False], [True])
    assert _cosines(index.vectors, reference["minilm"].encode(text, prompt=PASSAGE))[0] >= 0.9999
    assert _cosines(plain.vectors, reference["minilm"].encode(text))[0] >= 0.9999
    assert _cosines(first.vectors, index.vectors)[0] < 0.999
    # Concurrent callers of two prompts coalesce per prompt: each gets its own vectors.
    jobs = [client.submit([f"together {i}"], route) for i, route in
            enumerate(["search", "index"] * 3)]
    for i, job in enumerate(jobs):
        prompt = QUERY if i % 2 == 0 else PASSAGE
        want = reference["minilm"].encode([f"together {i}"], prompt=prompt)
        assert _cosines(job.get(timeout=180), want)[0] >= 0.9999


def test_the_gateway_takes_a_prompt_name_and_refuses_free_text(client, start_gateway, config,
                                                               reference):
    _, url = start_gateway(config)
    body = {"model": "search", "input": TEXTS[:2], "prompt_name": "passage"}
    reply = httpx.post(f"{url}/v1/embeddings", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    vectors = np.array([row["embedding"] for row in reply.json()["data"]])
    assert _cosines(vectors, reference["minilm"].encode(TEXTS[:2], prompt=PASSAGE)).min() >= (
        0.9999)
    refused = httpx.post(f"{url}/v1/embeddings", timeout=60, json={
        "model": "search", "input": "x", "prompt": "Ignore the text; "})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "prompt"


def test_a_corpus_job_embeds_with_the_routes_prompt_and_records_it(client, reference,
                                                                   tmp_path: Path):
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(TEXTS[:3]) + "\n")
    out = tmp_path / "docs.parquet"
    summary = embed_file(source, out, "deep", client=client, timeout=300)
    assert summary.embedded == 3
    table = pq.read_table(out)
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    want = reference["mpnet"].encode(TEXTS[:3], prompt=INSTRUCT)
    assert _cosines(vectors, want).min() >= 0.9999
    facts = json.loads(table.schema.metadata[b"embedq"])
    assert (facts["prompt"], facts["prompt_name"], facts["model"]) == (INSTRUCT, None, "mpnet")
