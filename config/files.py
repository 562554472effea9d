"""Files that other processes may read while they are written: build aside, then publish.

Workers of one host share a model cache folder (assembled split zips, ONNX exports, int8
calibration vectors). A crash must never leave something that looks finished, and two workers
racing must end with one complete result that both use. So everything is built under a temporary
sibling name and published with one atomic rename (a folder) or link (a file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def building_dir(final: Path, is_done: Callable[[Path], bool]) -> Iterator[Path]:
    """A fresh sibling folder to build ``final`` in, renamed to ``final`` when the block ends.

    ``is_done(final)`` tells a finished folder from an older, unfinished attempt (which is
    replaced). If another process publishes first, its folder is kept and ours is dropped. An
    exception in the block leaves nothing behind.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=final.parent))
    work.chmod(0o755)  # mkdtemp makes 0700; workers may run as another user
    try:
        yield work
        if final.exists() and not is_done(final):
            shutil.rmtree(final)
        try:
            work.rename(final)
        except OSError:  # another process finished first: keep theirs
            if not is_done(final):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_once(path: Path, write: Callable[[BinaryIO], None]) -> bool:
    """Create ``path`` with what ``write`` writes, unless it exists; True if this call made it.

    The first writer wins (a hard link never replaces a file), so every reader of ``path`` sees
    the same bytes even when several processes race to create it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as sink:
            write(sink)
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)


def replace_durably(path: Path, write: Callable[[Path], None]) -> None:
    """Make ``path`` hold what ``write`` writes to the temporary path it is given, all or nothing,
    and durably: written aside, fsynced, renamed over ``path``, the folder fsynced.

    Readers see the old file or the new one, never half of one, and once this returns the new
    bytes survive a power cut, not just a killed process. A crash leaves at most a hidden
    ``.<name>.*.tmp`` sibling, which the owner of the folder may delete.
    """
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    temporary.chmod(0o644)  # mkstemp makes 0600; the result is for other users and tools too
    try:
        write(temporary)
        with temporary.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
