"""A private certificate authority and a TLS-only redis-server: ``embedq bench --tls`` and the
tests measure and run embedq the way a ``rediss://`` deployment does.

Certificates are made with the ``openssl`` command line (no extra Python package): a CA, a
server certificate for 127.0.0.1 only (so ``localhost`` is a wrong host name, which the tests
use), a client certificate for mutual TLS, and a second, unrelated CA (a wrong CA).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import redis

from embedq.config.errors import ConfigError
from embedq.ops.redis_server import RedisServer

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_KEY_IDS = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"


def _openssl(folder: Path, *args: str) -> None:
    if shutil.which("openssl") is None:
        raise ConfigError("making test certificates needs the openssl command line "
                          "(apt-get install openssl)")
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def _authority(folder: Path, name: str) -> None:
    _openssl(folder, "req", "-x509", *_CURVE, "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN=embedq private {name}",
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
    """The files of a private PKI in one folder."""

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
    _signed(folder, "server", f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                              f"{_KEY_IDS}")
    _signed(folder, "client", f"extendedKeyUsage=clientAuth\n{_KEY_IDS}")
    return Certificates(folder)


class TlsRedisServer(RedisServer):
    """A redis-server that speaks only TLS (``--port 0``), asking for client certificates when
    ``mutual``, with a password for its default user when given. ``url`` carries the CA (and
    client certificate) as URL parameters, so every embedq part verifies the server."""

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
