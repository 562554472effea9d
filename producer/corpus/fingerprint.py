"""Is this the same input file the checkpoint was made from?

Size, modification time and an xxh3-128 hash of the first and the last MiB. Appending rows,
truncating, rewriting the header or (for Parquet) the footer all change the size or a hash. A
file that was copied again with the same bytes only changes its time: that is allowed with a
warning, so a pipeline that re-downloads its input does not lose a night's work. Hashing the
whole file would catch an edit of equal length in the middle too, but costs a full read of a
file that may be many gigabytes at every start.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import xxhash

_SPAN = 1 << 20


@dataclass(frozen=True, slots=True)
class Fingerprint:
    size: int
    mtime_ns: int
    head: str
    tail: str

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def fingerprint(path: Path) -> Fingerprint:
    """The fingerprint of ``path`` as it is now."""
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        head = xxhash.xxh3_128_hexdigest(handle.read(_SPAN))
        handle.seek(max(0, stat.st_size - _SPAN))
        tail = xxhash.xxh3_128_hexdigest(handle.read(_SPAN))
    return Fingerprint(stat.st_size, stat.st_mtime_ns, head, tail)


def changes(recorded: dict[str, object], current: Fingerprint) -> list[str]:
    """What differs in content (size, first or last MiB); empty when only the time moved."""
    now = current.as_json()
    return [f"{name} {recorded.get(name)} -> {now[name]}" for name in ("size", "head", "tail")
            if recorded.get(name) != now[name]]
