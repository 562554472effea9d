"""Bearer keys: where they come from, when they are required, what each key may do.

Keys come from ``EMBEDQ_GATEWAY_API_KEYS`` (comma-separated, plain) and
``EMBEDQ_GATEWAY_API_KEYS_FILE`` (one a line, optionally scoped: `embedq.gateway.keyfile`),
never from the command line, where ``ps`` would show them. A gateway bound beyond loopback
refuses to start without keys; with keys configured, every ``/v1`` request needs one, wherever
the gateway listens. Only SHA-256 digests are kept, and a presented key is compared with each in
constant time, so neither memory dumps nor response timing give a key away.

The file is looked at again (its inode, mtime and size) at most once a second, on a request, so
a rotated file takes effect without a restart; a file that became unreadable or invalid keeps
the keys loaded before and says so in the log once per change.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from dataclasses import dataclass, field

import structlog

from embedq.config.errors import ConfigError
from embedq.config.settings import Settings
from embedq.gateway.errors import (
    ApiKeyError,
    RateLimitedError,
    RequestTooLargeError,
    UseCaseNotAllowedError,
)
from embedq.gateway.keyfile import KeySpec, file_stamp, fingerprint, read_key_file
from embedq.gateway.rates import TokenBucket, retry_after

log = structlog.get_logger("embedq.gateway")
RELOAD_EVERY_S = 1.0

__all__ = ["Grant", "KeyCheck", "fingerprint", "is_loopback", "load_keys"]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _env_keys(settings: Settings) -> list[KeySpec]:
    if settings.gateway_api_keys is None:
        return []
    return [KeySpec.plain(k.strip())
            for k in settings.gateway_api_keys.get_secret_value().split(",") if k.strip()]


def load_keys(settings: Settings) -> list[KeySpec]:
    """Every configured key, from the variable and the file."""
    keys = _env_keys(settings)
    if settings.gateway_api_keys_file is not None:
        keys += read_key_file(settings.gateway_api_keys_file)
    return keys


@dataclass(slots=True)
class Grant:
    """What the key of one request may do; `admit` is asked once the use case is known."""

    spec: KeySpec | None  # None: no keys configured (a loopback gateway)
    bucket: TokenBucket | None = field(default=None)

    def allows(self, use_case: str) -> bool:
        """True when this key may call ``use_case`` (for listing only what a key can use)."""
        scope = self.spec.use_cases if self.spec is not None else None
        return scope is None or use_case in scope

    def admit(self, use_case: str, texts: int) -> None:
        """Raise unless this key may send ``texts`` texts to ``use_case`` now."""
        spec = self.spec
        if spec is None:
            return
        if not self.allows(use_case):
            raise UseCaseNotAllowedError(use_case, sorted(spec.use_cases or ()), spec.fingerprint)
        if self.bucket is None:
            return
        if texts > self.bucket.burst:
            raise RequestTooLargeError(
                "input", f"{texts} texts in one request are more than the API key "
                f"{spec.fingerprint} may send at once ({self.bucket.burst}); send fewer per "
                "request")
        wait = self.bucket.take(texts)
        if wait > 0:
            raise RateLimitedError(
                f"the API key {spec.fingerprint} is over its rate of {spec.rate:g} texts per "
                f"second; retry after {retry_after(wait)} s", retry_after(wait))


class KeyCheck:
    """Checks the ``Authorization: Bearer <key>`` header of a request, and what it may do."""

    def __init__(self, keys: list[KeySpec], settings: Settings | None = None) -> None:
        self._env = _env_keys(settings) if settings is not None else []
        self._path = settings.gateway_api_keys_file if settings is not None else None
        self._stamp = file_stamp(self._path) if self._path is not None else None
        self._looked_at = time.monotonic()
        self._lock = threading.Lock()
        self._buckets: dict[tuple[bytes, float, int], TokenBucket] = {}
        self._keys = keys

    @classmethod
    def for_host(cls, settings: Settings, host: str) -> KeyCheck:
        """The keys of ``settings``; an error if there are none and ``host`` is not loopback."""
        keys = load_keys(settings)
        if not keys and not is_loopback(host):
            raise ConfigError(
                f"the gateway on {host} would be open to the network: set "
                "EMBEDQ_GATEWAY_API_KEYS or EMBEDQ_GATEWAY_API_KEYS_FILE, or bind to 127.0.0.1")
        return cls(keys, settings)

    @property
    def required(self) -> bool:
        """True when requests must carry a key."""
        return bool(self._keys)

    def _reload(self) -> None:
        """Read the key file again if it changed since it was last read."""
        now = time.monotonic()
        if self._path is None or now - self._looked_at < RELOAD_EVERY_S:
            return
        with self._lock:
            self._looked_at = now
            stamp = file_stamp(self._path)
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                keys = self._env + read_key_file(self._path)
            except ConfigError as exc:  # names the file and line, never a key
                log.error("api_keys_not_reloaded", error=str(exc), kept=len(self._keys))
                return
            self._keys = keys
            current = {spec.digest for spec in keys}
            self._buckets = {which: bucket for which, bucket in self._buckets.items()
                             if which[0] in current}
            log.info("api_keys_reloaded", keys=len(keys),
                     fingerprints=sorted({k.fingerprint for k in keys}))

    def check(self, authorization: str | None) -> Grant:
        """The grant of the header's key (an unlimited one when no key is required); raises
        `ApiKeyError` for a missing or unknown key."""
        self._reload()
        structlog.contextvars.unbind_contextvars("key")  # never the previous request's key
        keys = self._keys
        if not keys:
            return Grant(None)
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiKeyError("this gateway needs an API key: send 'Authorization: Bearer "
                              "<key>' (OpenAI SDKs: api_key=...)")
        digest = KeySpec.plain(key.strip()).digest
        # Compare with every key, not up to the first match: the time taken says nothing.
        matches = [spec for spec in keys if hmac.compare_digest(digest, spec.digest)]
        if not matches:
            raise ApiKeyError("the API key is not accepted by this gateway")
        spec = matches[0]
        structlog.contextvars.bind_contextvars(key=spec.fingerprint)
        return Grant(spec, self._bucket(spec))

    def _bucket(self, spec: KeySpec) -> TokenBucket | None:
        """The key's bucket, kept across reloads while its rate and burst stay the same."""
        if spec.rate is None or spec.burst is None:
            return None
        which = (spec.digest, spec.rate, spec.burst)
        bucket = self._buckets.get(which)
        if bucket is None:
            with self._lock:
                bucket = self._buckets.setdefault(which, TokenBucket(spec.rate, spec.burst))
        return bucket
