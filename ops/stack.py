"""``embedq up``: the embedded default for a laptop, all in the foreground.

A private redis-server on a free port, one ``embedq worker`` per distinct queue of the routes,
Flower and the HTTP gateway on loopback; Ctrl-C or SIGTERM stops them all (workers get Celery's
warm shutdown, so a job in progress finishes). Other shells use it by setting the printed
EMBEDQ_REDIS_URL, or the gateway's URL.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import click
import structlog

from embedq.config.errors import ConfigError
from embedq.config.logs import configure_logging
from embedq.config.registry import Registry, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.ops.processes import stop_processes
from embedq.ops.redis_server import RedisServer
from embedq.tasks.app import create_app
from embedq.tasks.names import parse_queue, route_queue

log = structlog.get_logger(__name__)
_READY_TIMEOUT_S = 180.0


def queues_of(registry: Registry) -> list[str]:
    """The distinct queues the routes send to, in route order, fallback models included."""
    return list(dict.fromkeys(
        route_queue(route.served_by(model))
        for route in registry.routes.values()
        for model in route.chain
    ))


def worker_command(queue: str, concurrency: int | None) -> list[str]:
    """The ``embedq worker`` command line that serves one queue."""
    parsed = parse_queue(queue)
    if parsed is None:
        raise ConfigError(f"queue {queue!r} does not name a model and precision; "
                          "start its worker with `embedq worker ... -Q` yourself")
    model, precision = parsed
    command = [sys.executable, "-m", "embedq.cli", "worker", "-m", model, "-p", precision]
    return command + (["-c", str(concurrency)] if concurrency else [])


def wait_for_workers(redis_url: str, expected: int, timeout: float = _READY_TIMEOUT_S) -> None:
    """Block until ``expected`` workers answer a broadcast ping (a barrier, not a sleep)."""
    app = create_app(load_settings(redis_url=redis_url))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= expected:
            return
    raise ConfigError(f"only some of {expected} workers answered within {timeout:.0f}s")


def flower_command(settings: Settings, address: str, port: int) -> list[str]:
    """Flower's command line; anything but loopback needs credentials (it can revoke tasks)."""
    command = [sys.executable, "-m", "celery", "-A", "embedq.worker.celery_app", "flower",
               f"--address={address}", f"--port={port}"]
    if settings.flower_user and settings.flower_password:
        return [*command, f"--basic-auth={settings.flower_user}:{settings.flower_password}"]
    if address not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"Flower on {address} would be open to the network: set "
                          "EMBEDQ_FLOWER_USER and EMBEDQ_FLOWER_PASSWORD, or keep it on 127.0.0.1")
    return command


def gateway_command(port: int | None) -> list[str]:
    """The loopback gateway's command line, or none if not wanted or its extra is missing."""
    if port is None:
        return []
    if importlib.util.find_spec("uvicorn") is None:
        log.warning("gateway_skipped", reason="pip install 'embedq[gateway]' to serve HTTP")
        return []
    return [sys.executable, "-m", "embedq.cli", "gateway", "--port", str(port)]


def run_stack(
    *, flower: bool, flower_address: str, flower_port: int, concurrency: int | None,
    gateway_port: int | None = None,
) -> None:
    """Start Redis, the workers, Flower and the gateway; stop them all on Ctrl-C / SIGTERM."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    registry = load_registry(settings.config_dir)
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with RedisServer() as redis_server:
        env = {**os.environ, "EMBEDQ_REDIS_URL": redis_server.url}
        for key in ("EMBEDQ_BROKER_URL", "EMBEDQ_RESULT_BACKEND_URL", "EMBEDQ_CACHE_URL"):
            env.pop(key, None)
        queues = queues_of(registry)
        for queue in queues:
            children.append(subprocess.Popen(worker_command(queue, concurrency), env=env))
        if flower:
            command = flower_command(settings, flower_address, flower_port)
            children.append(subprocess.Popen(command, env=env))
        if gateway := gateway_command(gateway_port):
            children.append(subprocess.Popen(gateway, env=env))
        try:
            wait_for_workers(redis_server.url, len(queues))
            click.echo(f"embedq is up: export EMBEDQ_REDIS_URL={redis_server.url}  "
                       f"(queues: {', '.join(queues)}"
                       + (f"; gateway http://127.0.0.1:{gateway_port}/v1" if gateway else "")
                       + "; Ctrl-C stops)", err=True)
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.2)  # supervising: wake up for a signal or a child that died
        finally:
            stop_processes(children, grace_s=30)
