"""``embedq up``: the embedded default for a laptop, all in the foreground.

A private redis-server on a free port, one ``embedq worker`` per distinct queue of the routes
(each exporting Prometheus metrics on a free loopback port), then, once every worker answers,
Flower, ``embedq dashboard`` and the HTTP gateway on loopback; Ctrl-C or SIGTERM stops them all
(workers get Celery's warm shutdown, so a job in progress finishes). Other shells use it by
setting the printed EMBEDQ_REDIS_URL, or the gateway's URL. Flower starts after the workers so
its first inspection sees them.
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
from embedq.ops.redis_server import RedisServer, free_port
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


def flower_command(settings: Settings, address: str, port: int) -> tuple[list[str], dict[str, str]]:
    """Flower's command line and extra environment; off loopback it needs credentials (it can
    revoke tasks), which go in Flower's own FLOWER_BASIC_AUTH variable, never in argv."""
    command = [sys.executable, "-m", "celery", "-A", "embedq.ops.flower_app", "flower",
               f"--address={address}", f"--port={port}"]
    if settings.flower_user and settings.flower_password:
        return command, {"FLOWER_BASIC_AUTH": f"{settings.flower_user}:{settings.flower_password}"}
    if address not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"Flower on {address} would be open to the network: set "
                          "EMBEDQ_FLOWER_USER and EMBEDQ_FLOWER_PASSWORD, or keep it on 127.0.0.1")
    return command, {}


def dashboard_command(port: int) -> list[str]:
    """``embedq dashboard`` on loopback (credentials, if set, come from the environment)."""
    return [sys.executable, "-m", "embedq.cli", "dashboard", "--host", "127.0.0.1",
            "--port", str(port)]


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
    dashboard_port: int | None = 8050,
    gateway_port: int | None = None,
) -> None:
    """Start Redis, the workers, Flower, the dashboard and the gateway; stop them all on
    Ctrl-C / SIGTERM."""
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
            metrics = {"EMBEDQ_METRICS_PORT": str(free_port()),
                       "EMBEDQ_METRICS_ADDRESS": "127.0.0.1"}
            children.append(subprocess.Popen(worker_command(queue, concurrency),
                                             env={**env, **metrics}))
        try:
            wait_for_workers(redis_server.url, len(queues))
            if flower:
                command, extra = flower_command(settings, flower_address, flower_port)
                children.append(subprocess.Popen(command, env={**env, **extra}))
            if dashboard_port is not None:
                children.append(subprocess.Popen(dashboard_command(dashboard_port), env=env))
                click.echo(f"dashboard: http://127.0.0.1:{dashboard_port}/", err=True)
            if gateway := gateway_command(gateway_port):
                children.append(subprocess.Popen(gateway, env=env))
                click.echo(f"gateway: http://127.0.0.1:{gateway_port}/v1", err=True)
            click.echo(f"embedq is up: export EMBEDQ_REDIS_URL={redis_server.url}  "
                       f"(queues: {', '.join(queues)}"
                       + (f"; gateway http://127.0.0.1:{gateway_port}/v1" if gateway else "")
                       + "; Ctrl-C stops)", err=True)
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.2)  # supervising: wake up for a signal or a child that died
        finally:
            stop_processes(children, grace_s=30)
