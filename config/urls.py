"""Redis URLs as people may see them: never with their password."""

from __future__ import annotations

from urllib.parse import urlparse, urlunparse


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: fit for a log line or an error message.

    Sentinel URLs list several hosts separated by ``;``; each is masked.
    """
    parts = []
    for one in url.split(";"):
        try:
            parsed = urlparse(one)
            password = parsed.password
        except ValueError:  # not a URL at all: show its scheme only
            parts.append(one.split(":", 1)[0] + ":***")
            continue
        if password is None:
            parts.append(one)
            continue
        host = parsed.netloc.rsplit("@", 1)[-1]
        user = f"{parsed.username}:" if parsed.username else ":"
        parts.append(urlunparse(parsed._replace(netloc=f"{user}***@{host}")))
    return ";".join(parts)
