"""`embedq models add`: a user's sentence-transformers model registered in one step.

The folder (or hub snapshot) is read for its facts (`worker.models.folder`), loaded once with
sentence-transformers to prove the facts right, and, where the ONNX export can reproduce its
pooling, its int8 recipe is measured on this CPU by the same probe `precision: auto` uses (the
measurement is kept, so the first worker start decides without probing again). int8 is listed
only when it holds the quality bars. The entry, and optionally a route, are written to the
user's config folder (never the installed package) after the whole folder validates.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from embedq.config.errors import ConfigError, ModelUnavailableError
from embedq.config.registry import (
    INT8_MAX_SPEARMAN_DROP,
    INT8_MIN_MEAN_COSINE,
    MODELS_FILE,
    ROUTES_FILE,
    ModelSpec,
    Registry,
    load_registry,
)
from embedq.config.settings import Settings
from embedq.worker.models.folder import FolderFacts, inspect_folder


@dataclass(frozen=True, slots=True)
class Added:
    """What `add_model` registered, and what it measured."""

    name: str
    entry: dict[str, Any]
    config_dir: Path
    route: str | None
    int8: str  # what happened to int8, for a person


def config_folder(settings: Settings, config_dir: Path | None) -> Path:
    """The user's config folder, seeded with the packaged files where it has none."""
    folder = config_dir or settings.config_dir
    if folder is None:
        raise ConfigError("embedq models add writes models.json into your own config folder; "
                          "pass --config-dir or set EMBEDQ_CONFIG_DIR (it starts from the "
                          "packaged files), and point workers and producers at it too")
    folder.mkdir(parents=True, exist_ok=True)
    packaged = resources.files("embedq.config")
    for name in (MODELS_FILE, ROUTES_FILE):
        if not (folder / name).exists():
            (folder / name).write_text(packaged.joinpath(name).read_text(encoding="utf-8"))
    return folder


def _weights_digest(folder: Path) -> str:
    """A short sha256 of the weight files: a re-saved model gets new cache keys."""
    digest = hashlib.sha256()
    for path in sorted([*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]):
        with path.open("rb") as handle:
            while block := handle.read(4 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


def _source(where: str, revision: str | None) -> tuple[dict[str, Any], Path]:
    """The models.json source of ``where`` (a folder, else a hub id) and its local files."""
    path = Path(where).expanduser()
    if path.exists():
        folder = path.resolve()
        return {"kind": "path", "path": str(folder),
                "revision": revision or f"local-{_weights_digest(folder)}"}, folder
    if where.count("/") != 1 or where.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"{where!r} is neither a folder nor a hub id (owner/name)")
    from huggingface_hub import snapshot_download

    from embedq.worker.models.sources import hub_offline

    try:
        local = snapshot_download(where, revision=revision or "main",
                                  local_files_only=hub_offline())
    except Exception as exc:  # the hub's errors are many; each means "cannot get the files"
        raise ModelUnavailableError(
            f"hub model {where!r} could not be fetched ({exc}); fix: where no hub is reachable "
            "(HF_HUB_OFFLINE=1), save the model to a folder and add the folder") from exc
    return {"kind": "hub", "repo_id": where, "revision": revision or "main"}, Path(local)


def _entry(facts: FolderFacts, source: dict[str, Any], description: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "description": description, "source": source, "dim": facts.dim,
        "max_tokens": facts.max_tokens, "precisions": ["fp32", "bf16"],
        "pooling": facts.onnx_pooling, "prompts": facts.prompts,
    }
    if facts.default_prompt_name is not None:
        entry["default_prompt_name"] = facts.default_prompt_name
    return entry


def _check_and_measure(spec: ModelSpec, settings: Settings,
                       measure_int8: bool) -> tuple[dict[str, Any] | None, str]:
    """Load the model (proving its facts), and measure int8 where ONNX can serve it."""
    from embedq.worker.models.candidates import ONNX_INT8, REFERENCE
    from embedq.worker.models.cpu import read_cpu_features
    from embedq.worker.models.selection import build, measure
    from embedq.worker.models.sources import resolve_source

    source = resolve_source(spec, settings.model_cache_dir)
    encoder = build(spec, source, settings, REFERENCE, 1)  # raises if the dim is not right
    encoder.encode_batch(["a first text, to prove the model runs"])
    if not measure_int8:
        return None, "not measured (--no-measure)"
    if spec.pooling == "other":
        return None, "not offered: the ONNX export does not reproduce this model's pooling"
    if not (Path(source.location) / "tokenizer.json").is_file():
        return None, "not offered: the folder has no tokenizer.json (ONNX needs it)"
    found = measure(spec, source, settings, read_cpu_features(), [ONNX_INT8])[ONNX_INT8]
    figures = (f"mean cosine {found.mean_cosine:.4f}, Spearman drop {found.spearman_drop:+.4f}, "
               f"{found.speedup:.2f}x PyTorch fp32 here")
    if found.error is not None or not (found.mean_cosine >= INT8_MIN_MEAN_COSINE and
                                       found.spearman_drop <= INT8_MAX_SPEARMAN_DROP):
        return None, f"not offered: {found.error or figures} misses the quality bars"
    return {"mean_cosine": round(found.mean_cosine, 4),
            "spearman_drop": round(found.spearman_drop, 4), "keep_fp32": []}, f"offered: {figures}"


def _write(folder: Path, models: dict[str, Any], routes: dict[str, Any]) -> Registry:
    """Validate the new files as a whole in a scratch folder, then move them into place."""
    scratch = Path(tempfile.mkdtemp(prefix=".embedq-add-", dir=folder))
    try:
        for name, document in ((MODELS_FILE, models), (ROUTES_FILE, routes)):
            (scratch / name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        registry = load_registry(scratch)
        for name in (MODELS_FILE, ROUTES_FILE):
            os.replace(scratch / name, folder / name)
        return registry
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def add_model(settings: Settings, name: str, where: str, *, config_dir: Path | None = None,
              route: str | None = None, precision: str = "auto", revision: str | None = None,
              measure: bool = True, replace: bool = False) -> Added:
    """Register ``where`` (a sentence-transformers folder or hub id) as model ``name``."""
    folder = config_folder(settings, config_dir)
    models = json.loads((folder / MODELS_FILE).read_text(encoding="utf-8"))
    routes = json.loads((folder / ROUTES_FILE).read_text(encoding="utf-8"))
    if name in models["models"] and not replace:
        raise ConfigError(f"{folder / MODELS_FILE}: model {name!r} exists; choose another name "
                          "or pass --replace")
    if route is not None and route in routes["routes"] and not replace:
        raise ConfigError(f"{folder / ROUTES_FILE}: route {route!r} exists; choose another "
                          "name or pass --replace")
    source, files = _source(where, revision)
    facts = inspect_folder(files)
    entry = _entry(facts, source, f"added from {where}")
    try:
        spec = ModelSpec.model_validate({"name": name, **entry})
    except ValidationError as exc:
        raise ConfigError(f"model {name!r} from {where}: {exc}") from exc
    int8, note = _check_and_measure(spec, settings, measure)
    if int8 is not None:
        entry.update(int8=int8, precisions=["fp32", "bf16", "int8"])
    models["models"][name] = entry
    if route is not None:
        routes["routes"][route] = {"model": name, "precision": precision,
                                   "prompt_names": sorted(facts.prompts),
                                   "description": f"{name}, added with embedq models add"}
    _write(folder, models, routes)
    return Added(name, entry, folder, route, note)
