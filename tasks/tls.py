"""TLS to Redis: one reading of a ``rediss://`` URL for redis-py, kombu, Celery and Flower, and
errors that say which setting to fix.

A ``rediss://`` URL spells its TLS files the redis-py way::

    rediss://user:password@redis.internal:6380/0?ssl_ca_certs=/etc/embedq/ca.crt
        &ssl_certfile=/etc/embedq/client.crt&ssl_keyfile=/etc/embedq/client.key

Each library reads such a URL differently: kombu lets the URL's ``ssl_*`` parameters replace
``broker_use_ssl`` whole, Celery's result backend merges them, and Flower's Broker page reads
``broker_use_ssl`` only. So Celery gets the URL without them and every option in
``broker_use_ssl`` / ``redis_backend_use_ssl`` (`tls_options`), the same for all three. The
server's certificate and host name are verified unless the URL says ``ssl_cert_reqs=none``.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import redis

from embedq.config.errors import ConfigError
from embedq.config.settings import Settings
from embedq.config.urls import safe_url

TLS_PARAMETERS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
                  "ssl_check_hostname")
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
              "none": ssl.CERT_NONE, "cert_required": ssl.CERT_REQUIRED,
              "cert_optional": ssl.CERT_OPTIONAL, "cert_none": ssl.CERT_NONE}
def asks_for_tls(query: dict[str, str]) -> bool:
    """True when a URL's parameters ask for TLS."""
    return any(name in query for name in TLS_PARAMETERS)


URL_SETTINGS = "EMBEDQ_REDIS_URL (or EMBEDQ_BROKER_URL / EMBEDQ_RESULT_BACKEND_URL / " \
    "EMBEDQ_CACHE_URL where set)"


def _query(url: str) -> dict[str, str]:
    """The parameters of every part of a URL (a sentinel URL lists several hosts)."""
    found: dict[str, str] = {}
    for one in url.split(";"):
        found |= dict(parse_qsl(urlparse(one).query))
    return found


def tls_options(url: str) -> dict[str, Any] | None:
    """Every TLS option of a ``rediss://`` URL, or of a ``sentinel://`` URL that has ``ssl_*``
    parameters (TLS to the sentinels and to the master), as redis-py keywords; None for other
    URLs. Verification is on unless the URL turns it off; files as the URL names them."""
    scheme = urlparse(url.split(";")[0]).scheme
    query = _query(url)
    if scheme != "rediss" and not (scheme == "sentinel" and asks_for_tls(query)):
        return None
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise ConfigError(f"{safe_url(url)}: ssl_cert_reqs={reqs!r} is not one of required, "
                          "optional, none")
    options: dict[str, Any] = {
        "ssl_cert_reqs": _CERT_REQS[reqs],
        "ssl_check_hostname": query.get("ssl_check_hostname", "true").lower()
        not in ("false", "no", "0") and _CERT_REQS[reqs] != ssl.CERT_NONE}
    options |= {name: query[name] for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
                if query.get(name)}
    return options


def without_tls_parameters(url: str) -> str:
    """``url`` without its ``ssl_*`` parameters: for Celery, which gets them as options."""
    parts = []
    for one in url.split(";"):
        parsed = urlparse(one)
        query = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True)
                 if k not in TLS_PARAMETERS]
        parts.append(urlunparse(parsed._replace(query=urlencode(query))))
    return ";".join(parts)


def tls_problem(exc: BaseException) -> str | None:
    """What to change when ``exc`` (or its cause) is a failed TLS check; None otherwise."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ssl.SSLError):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    text = str(seen)
    if isinstance(seen, ssl.SSLCertVerificationError) and "mismatch" in text.lower():
        return ("the Redis server's certificate does not name the host in the URL: connect by "
                f"a name or address the certificate holds (the host of {URL_SETTINGS}), or "
                "issue the server a certificate for this name")
    if isinstance(seen, ssl.SSLCertVerificationError):
        return ("the Redis server's certificate is not signed by a CA this process trusts: set "
                f"ssl_cert_reqs=required&ssl_ca_certs=<the CA file> in {URL_SETTINGS}")
    if isinstance(seen, ssl.SSLEOFError) or "alert" in text.lower():
        return ("the Redis server closed the connection during TLS set-up: it asks for a "
                "client certificate (tls-auth-clients yes) and got none it trusts: set "
                "ssl_certfile=<client cert>&ssl_keyfile=<client key> in "
                f"{URL_SETTINGS}, signed by a CA the server trusts")
    return f"TLS to Redis failed ({text}); check the ssl_* parameters of {URL_SETTINGS}"


class ExplainedSSLConnection(redis.SSLConnection):
    """redis-py's TLS connection whose connection errors say which setting to fix."""

    def _error_message(self, exception: BaseException) -> str:
        # redis-py leaves _error_message unannotated.
        message: str = super()._error_message(exception)  # type: ignore[no-untyped-call]
        problem = tls_problem(exception)
        return f"{message} TLS: {problem}" if problem else message


def _context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    context.check_hostname = bool(options["ssl_check_hostname"])
    context.verify_mode = options["ssl_cert_reqs"]
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context


def check_tls(url: str, setting: str = URL_SETTINGS, timeout_s: float = 5.0) -> None:
    """Make one TLS handshake with a ``rediss://`` URL's server and raise a `ConfigError` naming
    ``setting`` if it fails; a server that is down or unreachable is left to the caller's own
    retries. Called where a process starts, so a wrong CA is one clear error at once."""
    options = tls_options(url)
    if options is None:
        return
    parsed = urlparse(url.split(";")[0])
    host = parsed.hostname or "127.0.0.1"
    try:
        context = _context(options)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{setting}: the TLS files of {safe_url(url)} cannot be read "
                          f"({exc}); fix ssl_ca_certs / ssl_certfile / ssl_keyfile") from None
    try:
        with (socket.create_connection((host, parsed.port or 6379), timeout=timeout_s) as raw,
              context.wrap_socket(raw, server_hostname=host) as tls):
            tls.sendall(b"PING\r\n")  # TLS 1.3 refuses a missing client certificate only now
            if not tls.recv(64):
                raise ssl.SSLEOFError("the server closed the connection after the handshake")
    except ssl.SSLError as exc:
        problem = tls_problem(exc) or str(exc)
        raise ConfigError(f"{setting}: TLS to {safe_url(url)} failed: "
                          f"{problem.replace(URL_SETTINGS, setting)}") from None
    except OSError:
        return  # down or unreachable: not a TLS setting to fix


def check_settings_tls(settings: Settings) -> None:
    """`check_tls` for each distinct Redis URL of ``settings``, naming the variable it came
    from (``EMBEDQ_BROKER_URL`` where set, else ``EMBEDQ_REDIS_URL``, ...)."""
    named = {"EMBEDQ_BROKER_URL": settings.broker_url,
             "EMBEDQ_RESULT_BACKEND_URL": settings.result_backend_url,
             "EMBEDQ_CACHE_URL": settings.cache_url, "EMBEDQ_REDIS_URL": settings.redis_url}
    checked: set[str] = set()
    for setting, url in named.items():
        if url is not None and url not in checked:
            checked.add(url)
            check_tls(url, setting)
