"""The registry and the settings: what loads, and how a mistake is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedq.config import Precision, load_registry, load_settings
from embedq.config.errors import ConfigError, UnknownUseCaseError
from tests.support import write_config


def test_packaged_routes_follow_the_issue():
    registry = load_registry()
    search = registry.route("search")
    assert (search.model, search.precision, registry.output_dim(search), search.normalize) == (
        "minilm", Precision.FP32, 384, True)
    assert registry.route(None) is search
    assert {"search", "clustering", "etl"} <= set(registry.routes)


def test_unknown_use_case_lists_the_known_ones():
    with pytest.raises(UnknownUseCaseError, match=r"unknown use case 'serch'; known: .*search"):
        load_registry().route("serch")


def _bad(tmp_path: Path, route: dict[str, object], models: dict[str, object] | None = None) -> str:
    folder = write_config(
        tmp_path,
        models or {"m": {"source": {"kind": "hashing"}, "dim": 64, "max_tokens": 32}},
        {"r": route},
        default="r",
    )
    with pytest.raises(ConfigError) as info:
        load_registry(folder)
    return str(info.value)


def test_dimension_above_native_names_the_valid_range(tmp_path):
    message = _bad(tmp_path, {"model": "m", "dim": 128})
    assert "routes.json: routes.r.dim" in message
    assert "8..64" in message
    assert "got 128" in message


def test_unknown_model_in_route(tmp_path):
    message = _bad(tmp_path, {"model": "nope"})
    assert "routes.r.model" in message
    assert "known: m" in message


def test_precision_the_model_does_not_allow(tmp_path):
    message = _bad(tmp_path, {"model": "m", "precision": "int8"})
    assert "routes.r.precision" in message
    assert "allows fp32" in message


def test_wrong_type_names_file_key_and_value(tmp_path):
    message = _bad(tmp_path, {"model": "m", "normalize": "maybe"})
    assert "routes.json: routes.r.normalize" in message
    assert "'maybe'" in message


def test_unknown_source_kind_names_the_model(tmp_path):
    message = _bad(tmp_path, {"model": "m"}, {"m": {"source": {"kind": "pickle"}, "dim": 64,
                                                     "max_tokens": 32}})
    assert "models.json: models.m.source" in message


def test_broken_json_and_missing_file(tmp_path):
    (tmp_path / "models.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"models.json: not valid JSON"):
        load_registry(tmp_path)
    (tmp_path / "models.json").write_text(json.dumps({"version": 1, "models": {}}))
    with pytest.raises(ConfigError, match=r"routes.json: file not found"):
        load_registry(tmp_path)


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("EMBEDQ_REDIS_URL", "rediss://:secret@cache.example:6380/2")
    monkeypatch.setenv("EMBEDQ_CACHE_URL", "redis://other:6379/1")
    monkeypatch.setenv("EMBEDQ_CHUNK_SIZE", "32")
    settings = load_settings()
    assert settings.broker == settings.result_backend == "rediss://:secret@cache.example:6380/2"
    assert settings.cache == "redis://other:6379/1"
    assert settings.chunk_size == 32


def test_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("EMBEDQ_REDIS_URL", "http://nope")
    with pytest.raises(ConfigError, match="EMBEDQ_REDIS_URL"):
        load_settings()


def test_a_bad_url_setting_never_echoes_its_password(monkeypatch):
    monkeypatch.setenv("EMBEDQ_REDIS_URL", "http://ops:hunter2@broker.example:6379/0")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "EMBEDQ_REDIS_URL" in str(raised.value)
    assert "broker.example" in str(raised.value)
    assert "hunter2" not in str(raised.value)
    assert raised.value.__cause__ is None
    run = subprocess.run([sys.executable, "-m", "embedq.cli", "routes"], capture_output=True,
                         text=True, timeout=60, check=False,
                         env={**os.environ, "EMBEDQ_REDIS_URL": "http://ops:hunter2@b:1/0"})
    assert run.returncode != 0
    assert "EMBEDQ_REDIS_URL" in run.stderr
    assert "hunter2" not in run.stderr + run.stdout
