"""The TLS-only redis-server and private CA of `embedq.ops.redis_tls`, and the ACL users of
`embedq acl` applied to such a server, for the TLS, ACL and leak tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from embedq.ops.redis_tls import Certificates, TlsRedisServer, make_certificates
from tests.support import worker_env

__all__ = ["Certificates", "TlsRedisServer", "apply_acl", "make_certificates"]


def apply_acl(server: TlsRedisServer, config: Path, secrets_folder: Path,
              *producers: str) -> dict[str, str]:
    """Run ``embedq acl --apply env`` against ``server`` (as its admin) and return each user's
    ``rediss://`` URL; the CLI's own output must hold no password."""
    passwords = secrets_folder / "acl-passwords"
    run = subprocess.run(
        [sys.executable, "-m", "embedq.cli", "acl",
         *(arg for producer in producers for arg in ("--producer", producer)),
         "--passwords", str(passwords), "--apply", "env"],
        env=worker_env(server.url, config, EMBEDQ_ACL_ADMIN_URL=server.url),
        capture_output=True, text=True, timeout=60, check=True)
    assert "ACL SETUSER embedq-" in run.stdout
    secrets = dict(line.split(" ", 1) for line in passwords.read_text().splitlines()
                   if not line.startswith("#"))
    assert not any(password in run.stdout + run.stderr for password in secrets.values())
    return {user: server.tls_url(user=user, password=password)
            for user, password in secrets.items()}
