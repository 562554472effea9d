"""Gateway keys as written: a plain key, or a key with the use cases and rate it is allowed.

One key a line in ``EMBEDQ_GATEWAY_API_KEYS_FILE`` (a line starting with ``#`` is a comment)::

    # ops: every use case, no rate limit
    sk-ops-7f3a
    sk-search-team-91c2  use_cases=search,qa  rate=20  burst=100

``rate`` is texts per second, ``burst`` how many texts may come at once (default: one second's
worth). Keys in ``EMBEDQ_GATEWAY_API_KEYS`` (comma-separated) are always plain. A key itself
never appears in a message: errors name the line, and everything else names the key by its
`fingerprint`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from embedq.config.errors import ConfigError

_SOURCE = "EMBEDQ_GATEWAY_API_KEYS_FILE"
_OPTIONS = ("use_cases", "rate", "burst")


def fingerprint(key: str) -> str:
    """A short, stable name of a key for logs and errors: the first 8 hex digits of its SHA-256.

    Enough to tell a deployment's keys apart, far too little to find the key from it.
    """
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One accepted key: its digest, fingerprint, and what it may do (None: no limit)."""

    digest: bytes
    fingerprint: str
    use_cases: frozenset[str] | None = None
    rate: float | None = None
    burst: int | None = None

    @classmethod
    def plain(cls, key: str) -> KeySpec:
        """A key allowed every use case at any rate."""
        return cls(hashlib.sha256(key.encode()).digest(), fingerprint(key))


def _number(where: str, name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{where}: {name}={value!r} is not a positive number")
    return number


def parse_line(line: str, where: str) -> KeySpec | None:
    """The key a line holds (None for blank and comment lines); ``where`` names the line in
    errors, which never quote the key."""
    words = [] if line.lstrip().startswith("#") else line.split()
    if not words:
        return None
    key, options = words[0], dict.fromkeys(_OPTIONS, "")
    for word in words[1:]:
        name, equals, value = word.partition("=")
        if not equals or name not in options or not value:
            raise ConfigError(f"{where}: unknown option {name!r} after the key; write "
                              "use_cases=a,b rate=TEXTS_PER_S burst=TEXTS")
        options[name] = value
    use_cases = frozenset(u for u in options["use_cases"].split(",") if u) or None
    rate = _number(where, "rate", options["rate"]) if options["rate"] else None
    burst = _number(where, "burst", options["burst"]) if options["burst"] else None
    if burst is not None and rate is None:
        raise ConfigError(f"{where}: burst= needs a rate= (texts per second)")
    if rate is not None and burst is None:
        burst = max(1.0, math.ceil(rate))
    plain = KeySpec.plain(key)
    return KeySpec(plain.digest, plain.fingerprint, use_cases, rate,
                   None if burst is None else int(burst))


def read_key_file(path: Path) -> list[KeySpec]:
    """Every key in the file; a `ConfigError` naming the file (and line) if it is unusable."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{_SOURCE}: cannot read {path}: {exc}") from None
    keys = [spec for number, line in enumerate(lines, 1)
            if (spec := parse_line(line, f"{_SOURCE} {path} line {number}")) is not None]
    if not keys:
        raise ConfigError(f"{_SOURCE}: {path} holds no key (one a line)")
    return keys


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or rewritten (None: it is gone)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size
