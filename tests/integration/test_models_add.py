"""`embedq models add` as a user runs it: MiniLM saved under another name with named prompts is
registered from its folder, served by a worker whose `precision: auto` decides between the
measured candidates, embedded with its default prompt, and evaluated with `embedq eval`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from embedq.config.registry import load_registry
from embedq.worker.models.candidates import REFERENCE, Candidate
from embedq.worker.models.cpu import read_cpu_features
from embedq.worker.models.decision import DecisionFile, choose
from embedq.worker.models.folder import inspect_folder
from embedq.worker.models.sources import resolve_source
from tests.support import make_client, minilm_dir, wait_for_consumers, worker_env

pytestmark = pytest.mark.model
PROMPTS = {"query": "query: ", "passage": "passage: "}
TEXTS = ["red running shoes", "crimson sneakers for jogging", "how to file a tax return"]


def _embedq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embedq.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """MiniLM saved as a user's own model: new name, named prompts, a default prompt."""
    from sentence_transformers import SentenceTransformer

    folder = tmp_path_factory.mktemp("user-model") / "shop-search-v1"
    SentenceTransformer(str(minilm_dir()), device="cpu", prompts=PROMPTS,
                        default_prompt_name="query").save(str(folder))
    return folder


def test_the_folder_facts_are_read_from_its_files(saved):
    facts = inspect_folder(saved)
    assert (facts.dim, facts.max_tokens, facts.pooling, facts.onnx_pooling) == (
        384, 256, "mean", "mean")
    assert facts.normalized
    assert {k: v for k, v in facts.prompts.items() if v} == PROMPTS
    assert facts.default_prompt_name == "query"


def test_an_invalid_folder_is_one_error_naming_what_is_missing(tmp_path, redis_server):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text('{"max_position_embeddings": 512}')
    run = _embedq("models", "add", "half", str(tmp_path / "half"), "--config-dir",
                  str(tmp_path / "config"), env=worker_env(redis_server.url, None))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1  # one line, no traceback
    assert "modules.json is missing" in run.stderr
    assert "no tokenizer" in run.stderr
    assert "no weights" in run.stderr
    assert not (tmp_path / "config" / "models.json").read_text().count('"half"')


def test_added_model_is_served_selected_and_evaluated(saved, tmp_path, redis_server,
                                                      start_worker, model_cache):
    from sentence_transformers import SentenceTransformer

    config = tmp_path / "config"
    env = worker_env(redis_server.url, config)
    added = _embedq("models", "add", "shop", str(saved), "--route", "shop", env=env)
    assert added.returncode == 0, added.stderr
    assert "added model shop" in added.stdout
    registry = load_registry(config)
    assert {"search", "shop"} <= set(registry.routes)  # the packaged routes are kept
    spec = registry.model("shop")
    assert (spec.dim, spec.max_tokens, spec.default_prompt_name) == (384, 256, "query")
    assert spec.prompts["passage"] == "passage: "
    int8_offered = "int8" in [p.value for p in spec.precisions]
    assert int8_offered == ("int8 offered" in added.stdout)

    candidates = ["torch-fp32", "onnx-int8"] if int8_offered else ["torch-fp32"]
    start_worker("shop", "auto", config, "-P", "solo",
                 EMBEDQ_AUTO_CANDIDATES=json.dumps(candidates))
    wait_for_consumers(redis_server.url, "embed.shop.auto", timeout=300)
    # What `auto` decided is the measurement's verdict on this CPU (models add measured int8).
    source = resolve_source(spec, model_cache)
    measured = DecisionFile(model_cache, "shop", source.revision, read_cpu_features()).load()
    wanted = [Candidate.parse(name) for name in candidates]
    assert set(wanted) <= set(measured)
    chosen = choose(measured, wanted)[0]

    reference = SentenceTransformer(str(saved), device="cpu")  # applies its default prompt
    with make_client(redis_server.url, config) as client:
        got = client.embed_detailed(TEXTS, "shop", timeout=180)
        picked = client.embed(TEXTS, "shop", prompt_name="passage", timeout=180)
    assert (got.prompt, got.prompt_name) == ("query: ", "query")
    assert got.precision == [chosen.precision.value] * 3
    floor = 0.9999 if chosen == REFERENCE else 0.98
    for vectors, want in ((got.vectors, reference.encode(TEXTS)),
                          (picked, reference.encode(TEXTS, prompt_name="passage"))):
        cosines = (vectors * want).sum(1) / np.linalg.norm(want, axis=1)
        assert cosines.min() >= floor

    evaluated = _embedq("eval", "sts", "--use-case", "shop", "--json", env={
        **env, "EMBEDQ_EVAL_RESULTS_FILE": str(tmp_path / "results.jsonl")})
    assert evaluated.returncode == 0, evaluated.stderr
    document = json.loads(evaluated.stdout)
    assert json.dumps(document).count('"shop"') >= 1
    assert "spearman" in json.dumps(document).lower()


def test_a_cls_pooled_model_exports_to_onnx_equal_to_sentence_transformers(tmp_path,
                                                                            model_cache):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from embedq.config.settings import Settings
    from embedq.ops.model_registration import add_model
    from embedq.worker.models.candidates import ONNX_FP32
    from embedq.worker.models.selection import build

    folder = tmp_path / "cls-model"
    transformer = Transformer(str(minilm_dir()), max_seq_length=128)
    SentenceTransformer(modules=[transformer, Pooling(384, "cls")],
                        device="cpu").save(str(folder))
    added = add_model(Settings(), "clsmini", str(folder), config_dir=tmp_path / "config",
                      measure=False)
    assert (added.entry["pooling"], added.entry["max_tokens"]) == ("cls", 128)
    spec = load_registry(tmp_path / "config").model("clsmini")
    source = resolve_source(spec, model_cache)
    encoder = build(spec, source, Settings(), ONNX_FP32, 1)
    texts = [*TEXTS, "word " * 300]
    got = encoder.encode_batch(texts, "query: ")
    want = SentenceTransformer(str(folder), device="cpu").encode(texts, prompt="query: ")
    cosines = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosines.min() >= 0.9999
