"""Bearer keys: where they come from, when they are required, how a request's key is checked.

Keys come from ``EMBEDQ_GATEWAY_API_KEYS`` (comma-separated) and ``EMBEDQ_GATEWAY_API_KEYS_FILE``
(one a line), never from the command line, where ``ps`` would show them. A gateway bound beyond
loopback refuses to start without keys; with keys configured, every ``/v1`` request needs one,
wherever the gateway listens. Only SHA-256 digests are kept, and a presented key is compared
with each in constant time, so neither memory dumps nor response timing give a key away.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from pathlib import Path

from embedq.config.errors import ConfigError
from embedq.config.settings import Settings
from embedq.gateway.errors import ApiKeyError


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _keys_in_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"EMBEDQ_GATEWAY_API_KEYS_FILE: cannot read {path}: {exc}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ConfigError(f"EMBEDQ_GATEWAY_API_KEYS_FILE: {path} holds no key (one a line)")
    return keys


def load_keys(settings: Settings) -> list[str]:
    """Every configured key, from the variable and the file."""
    keys: list[str] = []
    if settings.gateway_api_keys is not None:
        keys += [k.strip() for k in settings.gateway_api_keys.get_secret_value().split(",")
                 if k.strip()]
    if settings.gateway_api_keys_file is not None:
        keys += _keys_in_file(settings.gateway_api_keys_file)
    return keys


class KeyCheck:
    """Checks the ``Authorization: Bearer <key>`` header of a request."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    @classmethod
    def for_host(cls, settings: Settings, host: str) -> KeyCheck:
        """The keys of ``settings``; an error if there are none and ``host`` is not loopback."""
        keys = load_keys(settings)
        if not keys and not is_loopback(host):
            raise ConfigError(
                f"the gateway on {host} would be open to the network: set "
                "EMBEDQ_GATEWAY_API_KEYS or EMBEDQ_GATEWAY_API_KEYS_FILE, or bind to 127.0.0.1")
        return cls(keys)

    @property
    def required(self) -> bool:
        """True when requests must carry a key."""
        return bool(self._digests)

    def check(self, authorization: str | None) -> None:
        """Return if the header carries an accepted key (or none is required); else raise."""
        if not self._digests:
            return
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiKeyError("this gateway needs an API key: send 'Authorization: Bearer "
                              "<key>' (OpenAI SDKs: api_key=...)")
        digest = hashlib.sha256(key.strip().encode()).digest()
        # Compare with every key, not up to the first match: the time taken says nothing.
        matches = [hmac.compare_digest(digest, known) for known in self._digests]
        if not any(matches):
            raise ApiKeyError("the API key is not accepted by this gateway")
