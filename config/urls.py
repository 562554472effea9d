"""Redis URLs as people may see them (never with their password), and as files may name them
(``${VAR}`` read from the environment, so the password stays out of the file)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlparse, urlunparse

from embedq.config.errors import ConfigError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_variables(value: str, where: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with every ``${VAR}`` replaced by that environment variable.

    An unset variable is a `ConfigError` naming ``where`` (e.g. ``routes.etl.broker_url``) and
    the variable: an empty URL would silently mean the default broker.
    """
    env = os.environ if environ is None else environ

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if not env.get(name):
            raise ConfigError(f"{where} names ${{{name}}}, which is not set in the environment")
        return env[name]

    return _VARIABLE.sub(one, value)


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
