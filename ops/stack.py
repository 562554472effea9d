"""``embedq up``: the embedded default for a laptop, all in the foreground.

A private redis-server on a free port, one ``embedq worker`` per distinct queue of the routes
(each exporting Prometheus metrics on a free loopback port) or, with ``--autoscale``, the
autoscaler (`embedq.ops.autoscale`: pools sized to their load, idle ones at zero), then, once
every queue is served, Flower, ``embedq dashboard`` and the HTTP gateway on loopback; Ctrl-C
or SIGTERM stops them all
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
from collections.abc import Callable, Sequence
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
from embedq.tasks.connections import redis_client
from embedq.tasks.liveness import live_consumers
from embedq.tasks.names import parse_queue, route_queue

log = structlog.get_logger(__name__)
# A first start may export, quantize and measure a model (minutes for mpnet on two cores); later
# starts reuse the result. The wait ends early if a worker exits.
_READY_TIMEOUT_S = 1800.0
_PROGRESS_EVERY_S = 20.0


def queues_of(registry: Registry, use_cases: Sequence[str] = ()) -> list[str]:
    """The distinct queues the routes of ``use_cases`` (default: all) send to, in route order,
    fallback models included."""
    routes = [registry.route(name) for name in use_cases] or list(registry.routes.values())
    return list(dict.fromkeys(
        route_queue(route.served_by(model)) for route in routes for model in route.chain
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


def _node_prefix(queue: str) -> str:
    """How the node names of a queue's worker begin (``model.precision.pid@host``)."""
    model, precision = parse_queue(queue) or (queue, "")
    return f"{model}.{precision}."


def wait_for_workers(redis_url: str, workers: dict[str, subprocess.Popen[bytes]],
                     stopping: Callable[[], bool], timeout: float = _READY_TIMEOUT_S) -> bool:
    """Block until every worker (by queue) answers a broadcast ping: a barrier, not a sleep.

    Says which queues it still waits for every few seconds; raises if a worker exits or the
    timeout passes, returns False if asked to stop meanwhile.
    """
    app = create_app(load_settings(redis_url=redis_url))
    started = time.monotonic()
    said = started
    while not stopping():
        answered = {reply for answer in app.control.ping(timeout=1.0) or [] for reply in answer}
        waiting = [queue for queue in workers
                   if not any(name.startswith(_node_prefix(queue)) for name in answered)]
        if not waiting:
            return True
        for queue in waiting:
            if (code := workers[queue].poll()) is not None:
                raise ConfigError(f"the worker for {queue} exited with code {code} before it "
                                  "was ready; its log is above")
        now = time.monotonic()
        if now - started > timeout:
            raise ConfigError(f"the workers for {', '.join(waiting)} did not answer within "
                              f"{timeout:.0f}s")
        if now - said >= _PROGRESS_EVERY_S:
            said = now
            log.info("waiting_for_workers", queues=waiting, waited_s=round(now - started),
                     why="a first start prepares each model (export, quantize, measure); "
                         "later starts reuse it")
    return False


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


def autoscale_command(use_cases: Sequence[str], cores: int | None) -> list[str]:
    """``embedq autoscale`` for the stack: one warm process per queue at start, then the load
    decides (`embedq.ops.autoscale`)."""
    command = [sys.executable, "-m", "embedq.cli", "autoscale", "--initial", "1"]
    command += [part for name in use_cases for part in ("-u", name)]
    return command + (["--cores", str(cores)] if cores else [])


def wait_for_consumers(redis_url: str, queues: Sequence[str], scaler: subprocess.Popen[bytes],
                       stopping: Callable[[], bool], timeout: float = _READY_TIMEOUT_S) -> bool:
    """Block until every queue has a live consumer (the autoscaler's first workers loaded their
    models); raises if the autoscaler exits or the timeout passes, False if asked to stop."""
    client = redis_client(redis_url)
    started = time.monotonic()
    while not stopping():
        if all(live_consumers(client, queues)):
            return True
        if (code := scaler.poll()) is not None:
            raise ConfigError(f"the autoscaler exited with code {code} before every queue was "
                              "served; its log is above")
        if time.monotonic() - started > timeout:
            raise ConfigError(f"the queues {', '.join(queues)} had no live worker within "
                              f"{timeout:.0f}s")
        time.sleep(0.2)  # polling the liveness sets; a barrier with a deadline
    return False


def _start_workers(redis_url: str, queues: list[str], env: dict[str, str],
                   concurrency: int | None, autoscale: bool, cores: int | None,
                   use_cases: Sequence[str], stopping: Callable[[], bool],
                   children: list[subprocess.Popen[bytes]]) -> bool:
    """A fixed worker per queue, or the autoscaler; True once every queue is served."""
    if autoscale:
        scaler = subprocess.Popen(autoscale_command(use_cases, cores), env=env)
        children.append(scaler)
        return wait_for_consumers(redis_url, queues, scaler, stopping)
    workers = {}
    for queue in queues:
        metrics = {"EMBEDQ_METRICS_PORT": str(free_port()), "EMBEDQ_METRICS_ADDRESS": "127.0.0.1"}
        workers[queue] = subprocess.Popen(worker_command(queue, concurrency),
                                          env={**env, **metrics})
    children += workers.values()
    return wait_for_workers(redis_url, workers, stopping)


def _one_redis(registry: Registry, use_cases: Sequence[str]) -> None:
    """`embedq up` runs one private Redis for every queue: a route that names its own broker or
    cache would be served from somewhere its workers and readiness checks never look."""
    routes = [registry.route(name) for name in use_cases] or list(registry.routes.values())
    named = [route.name for route in routes if route.broker_url or route.cache_url]
    if named:
        raise ConfigError(f"embedq up runs one Redis for every queue, but route(s) "
                          f"{', '.join(named)} name their own broker_url/cache_url; run their "
                          "workers with `embedq worker` or `embedq autoscale` against those "
                          "Redis servers, or choose other use cases with -u")


def run_stack(
    *, flower: bool, flower_address: str, flower_port: int, concurrency: int | None,
    dashboard_port: int | None = 8050,
    gateway_port: int | None = None,
    use_cases: Sequence[str] = (),
    autoscale: bool = False,
    cores: int | None = None,
) -> None:
    """Start Redis, the workers, Flower, the dashboard and the gateway; stop them all on
    Ctrl-C / SIGTERM."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    registry = load_registry(settings.config_dir)
    _one_redis(registry, use_cases)
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
        queues = queues_of(registry, use_cases)
        try:
            if not _start_workers(redis_server.url, queues, env, concurrency, autoscale, cores,
                                  use_cases, lambda: stopping, children):
                return
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
