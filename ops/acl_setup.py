"""Passwords for the ACL users and applying the rules to a Redis server.

Passwords live in a file a deployment keeps with its other secrets (``user password`` a line,
mode 0600); `passwords_for` adds a random one for each user that has none, so running
``embedq acl --passwords FILE`` again keeps every password and only adds new users'. The
rules sent to Redis and printed carry each password's SHA-256 digest, never the password.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import redis

from embedq.config.errors import ConfigError
from embedq.config.urls import safe_url
from embedq.ops.acl import AclUser
from embedq.tasks.connections import redis_client


def _read(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    except OSError as exc:
        raise ConfigError(f"--passwords: cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, _, password = line.strip().partition(" ")
        if not password.strip():
            raise ConfigError(f"--passwords {path} line {number}: write 'user password'")
        found[user] = password.strip()
    return found


def passwords_for(path: Path, users: list[AclUser]) -> dict[str, str]:
    """Each user's password from ``path``, new random ones added (and saved, mode 0600)."""
    known = _read(path)
    missing = [user.name for user in users if user.name not in known]
    if missing:
        known |= {name: secrets.token_urlsafe(24) for name in missing}
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write("# embedq ACL users' passwords: keep with your secrets\n")
            out.writelines(f"{name} {password}\n" for name, password in known.items())
    return known


def apply(admin_url: str, users: list[AclUser], passwords: dict[str, str]) -> None:
    """Create or reset each user on the server at ``admin_url`` (a user allowed ``ACL``)."""
    client = redis_client(admin_url, socket_timeout=10.0, socket_connect_timeout=5.0)
    try:
        for user in users:
            # Raw ACL SETUSER: redis-py's acl_setuser() cannot express selectors or %R/%W.
            client.execute_command(  # type: ignore[no-untyped-call]  # unannotated in redis-py
                "ACL", "SETUSER", *user.setuser(passwords.get(user.name)))
    except redis.ResponseError as exc:
        raise ConfigError(f"--apply {safe_url(admin_url)}: Redis refused the rules: {exc}; "
                          "the admin URL's user needs the ACL command") from None
    except (redis.ConnectionError, OSError) as exc:
        raise ConfigError(f"--apply {safe_url(admin_url)}: cannot connect: {exc}") from None
    finally:
        client.close()
