"""Redis connections from URLs: plain, TLS, unix socket, or through Redis Sentinel.

Every Redis client embedq opens (queues, replies, cache, liveness, dead letters) is made here,
so ``rediss://`` certificate checks, ``sentinel://`` failover and password hiding behave the
same everywhere. Sentinel URLs use kombu's spelling, so one URL serves Celery and embedq alike:
``sentinel://:password@host1:26379;sentinel://host2:26379/0?master_name=mymaster``.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, parse_qsl, urlencode, urlparse, urlunparse

import redis
from redis.sentinel import Sentinel

from embedq.config.urls import safe_url
from embedq.tasks.tls import ExplainedSSLConnection, tls_options

SENTINEL = "sentinel"
__all__ = ["blob_list", "database", "redis_client", "safe_url", "sentinel_master",
           "sentinel_tls", "without_master_name"]


def sentinel_master(url: str, default: str) -> str:
    """The master name a ``sentinel://`` URL asks for (``?master_name=``), else ``default``."""
    names = parse_qs(urlparse(url.split(";")[-1]).query).get("master_name")
    return names[0] if names else default


def without_master_name(url: str) -> str:
    """``url`` without a ``?master_name=`` (kombu takes the master from its transport options
    and refuses unknown URL parameters), for handing a sentinel URL to Celery."""
    parts = []
    for one in url.split(";"):
        parsed = urlparse(one)
        query = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True)
                 if k != "master_name"]
        parts.append(urlunparse(parsed._replace(query=urlencode(query))))
    return ";".join(parts)


def redis_client(url: str, *, master_name: str = "mymaster", **options: Any) -> redis.Redis:
    """A client for ``url``; ``options`` are redis-py connection options (timeouts, retry).

    For ``sentinel://`` the client follows the current master: after a failover, the next
    command that fails reconnects to whichever node the sentinels now name.
    """
    scheme = urlparse(url).scheme
    if scheme == "rediss":  # verified by default; a failed check says which setting to fix
        return redis.Redis.from_url(url, connection_class=ExplainedSSLConnection, **options)
    if scheme != SENTINEL:
        return redis.Redis.from_url(url, **options)
    hosts, password, db = [], None, 0
    for one in url.split(";"):
        parsed = urlparse(one)
        hosts.append((parsed.hostname or "127.0.0.1", parsed.port or 26379))
        password = parsed.password or password
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    tls = sentinel_tls(url)  # TLS to the sentinels and to the master alike
    asked = {"password": password} if password else {}
    # redis-py before 8.2 leaves Sentinel unannotated; 8.2 annotates it (either passes)
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        hosts, sentinel_kwargs={**asked, **tls} or None,
        socket_timeout=options.get("socket_timeout"))
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        sentinel_master(url, master_name), password=password, db=db, **tls, **options)
    return client


def sentinel_tls(url: str) -> dict[str, Any]:
    """redis-py's keywords for TLS to a ``sentinel://`` URL's sentinels and master (``ssl_*``
    parameters in the URL), or none."""
    options = tls_options(url)
    return {"ssl": True, **options} if options else {}


def database(url: str) -> int:
    """The database number a URL names (0 when it names none)."""
    path = urlparse(url.split(";")[-1]).path.strip("/")
    if path.isdigit():
        return int(path)
    return int(parse_qs(urlparse(url).query).get("db", ["0"])[0])


def blob_list(reply: object) -> list[bytes]:
    """A list reply of a client made here (``decode_responses`` off: every item is bytes)."""
    return cast(list[bytes], reply)
