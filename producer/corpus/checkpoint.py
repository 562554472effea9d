"""The checkpoint beside an output: what the job is, how far it got, and one writer at a time.

``<output>.embedq/job.json`` names the input (with its fingerprint), the route as configured,
and the reading options; ``parts/`` is the durable spool. A job that finds a checkpoint resumes
only if all of these still match, so vectors of two inputs, two routes or two model revisions
never end in one output. The checkpoint stays after the job completes: a re-run is then a no-op
that returns the summary (a retried pipeline task costs nothing), and it records where the
vectors came from.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedq.config.errors import CheckpointMismatchError, OutputFileError
from embedq.config.files import replace_durably
from embedq.producer.corpus.fingerprint import Fingerprint, changes
from embedq.producer.corpus.spool import Spool

VERSION = 1


@dataclass(frozen=True, slots=True)
class Identity:
    """What must not change between the runs of one job."""

    input: dict[str, Any]  # path, format
    route: dict[str, Any]  # the route as configured: model, chain, precision, dim, dtype, ...
    options: dict[str, Any]  # text and id fields, id type, output format


def require_folder(output: Path) -> None:
    """Refuse an output whose folder does not exist, naming the folder to create."""
    if not output.parent.is_dir():
        raise OutputFileError(f"cannot write {str(output)!r}: its folder "
                              f"{str(output.parent)!r} does not exist; create it first")


class Checkpoint:
    """The ``<output>.embedq`` folder of one job."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.folder = output.with_name(output.name + ".embedq")
        self.job_file = self.folder / "job.json"
        self.spool = Spool(self.folder / "parts")
        self._lock: int | None = None

    def exists(self) -> bool:
        return self.job_file.exists()

    def lock(self) -> None:
        """Create the folder (proving the output's folder is writable) and hold its lock."""
        require_folder(self.output)
        try:
            self.folder.mkdir(exist_ok=True)
            handle = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputFileError(f"cannot write beside {str(self.output)!r}: {exc.strerror}; "
                                  "choose an output in a folder you can write to") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 32).decode(errors="replace").strip() or "?"
            os.close(handle)
            raise OutputFileError(f"another embedq job (pid {holder}) is writing "
                                  f"{str(self.output)!r}; wait for it to end or stop it") from None
        os.ftruncate(handle, 0)
        os.write(handle, str(os.getpid()).encode())
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing drops the flock; a killed process drops it too
            self._lock = None

    def read(self) -> dict[str, Any]:
        try:
            record: dict[str, Any] = json.loads(self.job_file.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointMismatchError(
                f"the checkpoint {str(self.job_file)!r} cannot be read ({exc}); re-run with "
                "--restart to start over") from exc
        if record.get("version") != VERSION:
            raise CheckpointMismatchError(
                f"the checkpoint {str(self.job_file)!r} is of version {record.get('version')}, "
                f"this embedq writes version {VERSION}; re-run with --restart")
        return record

    def write(self, record: dict[str, Any]) -> None:
        def dump(path: Path) -> None:
            path.write_text(json.dumps(record, indent=2) + "\n")

        replace_durably(self.job_file, dump)

    def start(self, identity: Identity, fingerprint: Fingerprint) -> None:
        """Record a new job. Parts without a record belong to no job that can be checked (a
        kill during `discard` leaves them), so they go first."""
        self.spool.clear()
        self.write({"version": VERSION, "state": "running", "input": identity.input,
                    "fingerprint": fingerprint.as_json(), "route": identity.route,
                    "options": identity.options})

    def discard(self) -> None:
        """Forget the job (``--restart``): its record, then its parts. In this order a kill half
        way leaves parts without a record, which `start` drops, never a record that vouches for
        some of another run's parts."""
        self.job_file.unlink(missing_ok=True)
        self.spool.clear()

    def drop_unfinished(self, finals: Iterable[Path]) -> None:
        """Delete what a kill left half written of the job record and of each final file: their
        temporary siblings ``.<name>.<8 random characters>.tmp``, as `replace_durably` names
        them. Only those names: beside ``x.parquet`` another job may be writing
        ``x.parquet.npy`` right now, and its temporary file starts the same way."""
        for path in (self.job_file, *finals):
            exact = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
            for found in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
                if exact.fullmatch(found.name):
                    found.unlink(missing_ok=True)


def check_same_job(record: dict[str, Any], identity: Identity, current: Fingerprint,
                   output: Path) -> list[str]:
    """Raise `CheckpointMismatchError` if the job changed; the warnings to log otherwise."""
    problems: list[str] = []
    content = changes(record.get("fingerprint", {}), current)
    if content or record.get("input", {}).get("format") != identity.input["format"]:
        problems.append(f"the input changed ({'; '.join(content) or 'format'})")
    for what in ("route", "options"):
        was, now = record.get(what, {}), getattr(identity, what)
        moved = [f"{key} {was.get(key)!r} -> {now.get(key)!r}"
                 for key in sorted({*was, *now}) if was.get(key) != now.get(key)]
        if moved:
            problems.append(f"the {what} changed ({'; '.join(moved)})")
    if problems:
        raise CheckpointMismatchError(
            f"{str(output)!r} has a checkpoint from another job: {'; '.join(problems)}. Mixing "
            "them would mix vector spaces or rows; re-run with --restart to start over, or "
            "restore what changed to resume")
    if record.get("fingerprint", {}).get("mtime_ns") != current.mtime_ns:
        return [f"the input's modification time changed but its size and first and last MiB "
                f"did not; resuming {str(output)!r}"]
    return []
