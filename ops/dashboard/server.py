"""``embedq dashboard``: one small HTTP server for the page, its JSON and Prometheus text.

It is the standard library's threading HTTP server on purpose: the page polls every two
seconds, a Prometheus server scrapes every fifteen, and nothing here needs an event loop, a
framework or a dependency a producer host would not already have. Each request is answered from
the sampler's latest snapshot (``/api/figures``) or from one pipelined Redis round trip
(``/metrics``); the server never loads a model. Like Flower it refuses an address off loopback
unless ``EMBEDQ_DASHBOARD_USER`` and ``EMBEDQ_DASHBOARD_PASSWORD`` are set, and then asks every
request for them (HTTP basic auth, compared in constant time).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import ClassVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from embedq.config.errors import ConfigError
from embedq.ops.dashboard.sampler import Sampler

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def check_bind(address: str, user: str | None, password: str | None) -> None:
    """Refuse an address reachable from the network without credentials."""
    if address not in LOOPBACK and not (user and password):
        raise ConfigError(f"the dashboard on {address} would be open to the network: set "
                          "EMBEDQ_DASHBOARD_USER and EMBEDQ_DASHBOARD_PASSWORD, or keep it on "
                          "127.0.0.1")


def _asset(name: str) -> bytes:
    return resources.files("embedq.ops.dashboard").joinpath("static", name).read_bytes()


class DashboardHandler(BaseHTTPRequestHandler):
    """Routes: ``/``, ``/static/<asset>``, ``/api/figures``, ``/metrics``, ``/healthz``."""

    sampler: ClassVar[Sampler]
    registry: ClassVar[CollectorRegistry]
    credentials: ClassVar[bytes | None]
    server_version = "embedq-dashboard"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a poll every two seconds would drown the log."""

    def _authorised(self) -> bool:
        if self.credentials is None:
            return True
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        try:
            given = base64.b64decode(value, validate=True) if scheme == "Basic" else b""
        except binascii.Error:
            given = b""
        return hmac.compare_digest(given, self.credentials)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Serve one route, after the credentials check (``/healthz`` needs none)."""
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain")
            return
        if not self._authorised():
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Basic realm="embedq"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/":
            self._send(HTTPStatus.OK, _asset("index.html"), "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[8:] in _STATIC:
            self._send(HTTPStatus.OK, _asset(path[8:]), f"{_STATIC[path[8:]]}; charset=utf-8")
        elif path == "/api/figures":
            body = json.dumps(self.sampler.figures()).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")


def make_server(address: str, port: int, sampler: Sampler, registry: CollectorRegistry,
                user: str | None, password: str | None) -> ThreadingHTTPServer:
    """A bound server (port 0 picks a free one) whose handler sees the sampler and registry."""
    check_bind(address, user, password)
    handler = type("BoundDashboardHandler", (DashboardHandler,), {
        "sampler": sampler,
        "registry": registry,
        "credentials": f"{user}:{password}".encode() if user and password else None,
    })
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    return server
