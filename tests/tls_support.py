"""A test certificate authority (made with the ``openssl`` command line) and a TLS-only
redis-server: what a deployment with ``rediss://`` looks like, made fresh for each module.

Certificates: a CA, a server certificate for 127.0.0.1 only (so ``localhost`` is a wrong host
name), a client certificate for mutual TLS, and a second, unrelated CA (a wrong CA).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import redis

from embedq.ops.redis_server import RedisServer
from tests.support import worker_env

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def _authority(folder: Path, name: str) -> None:
    _openssl(folder, "req", "-x509", *_CURVE, "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN=embedq test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _signed(folder: Path, name: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(folder, "req", *_CURVE, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN=embedq {name}")
    _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
             "-extfile", f"{name}.ext")


@dataclass(frozen=True)
class Certificates:
    """The files of a test PKI."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def wrong_ca(self) -> Path:
        return self.folder / "other.crt"

    def file(self, name: str) -> Path:
        return self.folder / name


def make_certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for IP 127.0.0.1, a client certificate and a second CA."""
    folder.mkdir(parents=True, exist_ok=True)
    _authority(folder, "ca")
    _authority(folder, "other")
    keys = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    _signed(folder, "server", f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n{keys}")
    _signed(folder, "client", f"extendedKeyUsage=clientAuth\n{keys}")
    return Certificates(folder)


class TlsRedisServer(RedisServer):
    """A redis-server that speaks only TLS (``--port 0``), asking for client certificates when
    ``mutual``. ``url`` carries the CA (and client certificate) as redis-py/kombu parameters."""

    def __init__(self, certificates: Certificates, *, mutual: bool = False,
                 password: str | None = None, args: tuple[str, ...] = ()) -> None:
        self.certificates = certificates
        self.mutual = mutual
        self.password = password
        super().__init__(args=())
        files = certificates.folder
        self.args = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(files / "server.crt"),
                     "--tls-key-file", str(files / "server.key"),
                     "--tls-ca-cert-file", str(files / "ca.crt"),
                     "--tls-auth-clients", "yes" if mutual else "no",
                     *(["--requirepass", password] if password else []), *args]

    def tls_url(self, *, host: str = "127.0.0.1", ca: Path | None = None,
                client_cert: bool | None = None, user: str | None = None,
                password: str | None = None) -> str:
        """A ``rediss://`` URL for this server (by default: its CA, a client certificate when
        mutual, the default user with the server's password)."""
        query = {"ssl_ca_certs": str(ca or self.certificates.ca)}
        if self.mutual if client_cert is None else client_cert:
            query |= {"ssl_certfile": str(self.certificates.file("client.crt")),
                      "ssl_keyfile": str(self.certificates.file("client.key"))}
        password = password or (None if user else self.password)
        login = f"{user or ''}:{password}@" if password else ""
        return f"rediss://{login}{host}:{self.port}/0?{urlencode(query)}"

    @property
    def url(self) -> str:
        return self.tls_url()

    def probe_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=0.5)


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
