"""HTTP helpers for tests of the served processes (dashboard, Flower, gateway): fetch a page,
and start a process that serves on a free port, returned once it answers."""

from __future__ import annotations

import base64
import sys
import urllib.error
import urllib.request
from pathlib import Path

from embedq.ops.redis_server import free_port
from tests.support import WorkerProcess, wait_until, worker_env


def get(url: str, auth: tuple[str, str] | None = None) -> bytes:
    """The body of a 200 answer (an HTTP error raises, as urllib does)."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def get_any(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of any answer, errors included (their bodies are checked too)."""
    try:
        return 200, get(url, auth)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answers(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        get(url, auth)
        return True
    except OSError:
        return False


def serve(started: list[WorkerProcess], redis_url: str, config: Path | None, health: str,
          *command: str, auth: tuple[str, str] | None = None, **env: str) -> str:
    """Start ``python <command> --port=<free>`` and return its base URL once ``health``
    answers; the process joins ``started`` (the caller stops them)."""
    port = free_port()
    process = WorkerProcess([sys.executable, *command, f"--port={port}"],
                            worker_env(redis_url, config, **env))
    started.append(process)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(base + health, auth) or process.process.poll() is not None,
               timeout=60, every=0.05)
    assert process.process.poll() is None, process.stop()
    return base


def shows(url: str, text: str, auth: tuple[str, str] | None = None) -> bool:
    """True once ``url`` answers 200 with ``text`` in its body (a barrier for pages that fill
    in after start, like Flower's Broker page and the dashboard's figures)."""
    try:
        return text in get(url, auth).decode(errors="replace")
    except OSError:
        return False
