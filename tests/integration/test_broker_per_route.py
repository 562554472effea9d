"""A route with its own broker, end to end on two real redis-servers: the default one (plain)
and the `far` route's (TLS only, with a password, named in routes.json by an environment
variable). Producer, workers, dead letters, the dashboard, Flower, the probe and the autoscaler
each follow the route; a worker of one route never opens a connection to the other route's
broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from embedq.config.errors import ConfigError
from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.ops.autoscale.policy import Policy
from embedq.ops.autoscale.runner import Autoscaler
from embedq.tasks.brokers import queue_settings, settings_for_queues
from embedq.tasks.dead_letters import count_dead
from embedq.tasks.names import dead_key, reply_key
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import DeadLetter, build_message
from tests.http_support import get, serve, shows
from tests.support import (
    HASHING_MODEL,
    WorkerProcess,
    expected_hashing,
    make_client,
    wait_for_consumers,
    wait_until,
    worker_env,
    write_config,
)
from tests.tls_support import TlsRedisServer

NEAR = "embed.hashing.fp32"
FAR = "embed.hashing_far.fp32"
VARIABLE = "EMBEDQ_TEST_FAR_BROKER_URL"


@pytest.fixture(scope="module")
def far_server(certificates) -> Iterator[TlsRedisServer]:
    """The far route's broker and cache: TLS only, with a password."""
    with TlsRedisServer(certificates, password="far-secret-0123") as server:
        yield server


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return write_config(
        tmp_path_factory.mktemp("broker-per-route"),
        {"hashing": HASHING_MODEL, "hashing_far": HASHING_MODEL},
        {"near": {"model": "hashing", "precision": "fp32"},
         "far": {"model": "hashing_far", "precision": "fp32",
                 "broker_url": f"${{{VARIABLE}}}", "cache_url": f"${{{VARIABLE}}}"}},
        default="near")


@pytest.fixture(scope="module")
def env(redis_server, far_server, config) -> dict[str, str]:
    """Every process's environment: the default broker, and the far one by variable."""
    return worker_env(redis_server.url, config, **{VARIABLE: far_server.url})


def _connections(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


def _worker(model: str, env: dict[str, str], started: list[WorkerProcess]) -> None:
    started.append(WorkerProcess([sys.executable, "-m", "embedq.cli", "worker", "-m", model,
                                  "-p", "fp32", "-c", "1"], env))


@pytest.fixture(scope="module")
def served(redis_server, far_server, config, env, processes, monkeypatch_module) -> None:
    """Both workers serving, each checked to have never connected to the other's broker (the
    counters of connections received, read on one connection opened before)."""
    monkeypatch_module.setenv(VARIABLE, far_server.url)  # for this test process's clients
    near_admin = redis.Redis.from_url(redis_server.url)
    far_admin = redis.Redis.from_url(far_server.url)
    before = _connections(near_admin)
    _worker("hashing_far", env, processes)
    wait_for_consumers(far_server.url, FAR)
    with make_client(redis_server.url, config) as client:
        client.embed(["far only"], "far", timeout=30)  # opens the far broker's link alone
    assert _connections(near_admin) == before, "the far worker connected to the default broker"
    before = _connections(far_admin)
    _worker("hashing", env, processes)
    wait_for_consumers(redis_server.url, NEAR)
    with make_client(redis_server.url, config) as client:
        client.embed(["near only"], "near", timeout=30)
    assert _connections(far_admin) == before, "the near worker connected to the far broker"


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_each_route_is_answered_on_its_own_broker(served, redis_server, far_server, config):
    texts = ["one", "two", "one"]
    with make_client(redis_server.url, config) as client:
        near = client.embed(texts, "near", timeout=30)
        far = client.embed(texts, "far", timeout=30)
        assert client.route_status("far").queue.consumers == 1
        assert client.route_status("near").queue.consumers == 1
    np.testing.assert_allclose(near, expected_hashing(config, texts), rtol=1e-6)
    np.testing.assert_allclose(far, expected_hashing(config, texts, model="hashing_far"),
                               rtol=1e-6)
    near_broker = redis.Redis.from_url(redis_server.url)
    far_broker = redis.Redis.from_url(far_server.url)
    assert not near_broker.exists(f"embedq:v1:live:{FAR}")
    assert not far_broker.exists(f"embedq:v1:live:{NEAR}")
    assert far_broker.keys("embedq:v1:vec:*")  # the far route's cache is its own too
    assert not near_broker.keys("embedq:v1:vec:*hashing_far*")


def _dead_letters(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embedq.cli", "dead-letters", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_dead_letters_are_listed_and_replayed_on_the_route_broker(served, far_server, env):
    far_broker = redis.Redis.from_url(far_server.url)
    request = EmbedRequest(texts=["back from the dead"], route="far", model="hashing_far",
                           precision="fp32", dim=64, normalize=True, output_dtype="float32")
    listen = reply_key("far-operator")
    _, raw = build_message(request, queue=FAR, reply_to=listen, origin="test", now=time.time())
    far_broker.lpush(dead_key(FAR), DeadLetter("poison", FAR, time.time(), 3, raw).encode())

    listed = _dead_letters(env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report[FAR]["count"] == 1
    assert report[NEAR]["count"] == 0
    assert far_server.password not in listed.stdout + listed.stderr

    replayed = _dead_letters(env, "replay", "--queue", FAR)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1" in replayed.stdout
    wait_until(lambda: far_broker.llen(listen) == 1, timeout=30)  # the far worker answered
    assert count_dead(far_broker, FAR) == 0


def test_dashboard_and_flower_show_both_brokers(served, redis_server, far_server, env, config,
                                                processes):
    dashboard = serve(processes, redis_server.url, config, "/healthz", "-m", "embedq.cli",
                      "dashboard", **{VARIABLE: far_server.url})
    wait_until(lambda: shows(f"{dashboard}/api/figures", FAR), timeout=30)
    rows = {row["queue"]: row for row in json.loads(get(f"{dashboard}/api/figures"))["queues"]}
    assert rows[NEAR]["consumers"] == 1
    assert rows[FAR]["consumers"] == 1
    assert rows[NEAR]["broker"] == redis_server.url
    assert rows[FAR]["broker"].startswith("rediss://:***@")
    assert f'queue="{FAR}"' in get(f"{dashboard}/metrics").decode()  # KEDA's gauges too
    flower = serve(processes, redis_server.url, config, "/healthcheck", "-m", "celery", "-A",
                   "embedq.ops.flower_app", "flower", "--address=127.0.0.1",
                   **{VARIABLE: far_server.url})
    wait_until(lambda: shows(f"{flower}/broker", FAR), timeout=30)
    assert NEAR in get(f"{flower}/broker").decode()


def test_queue_brokers_are_checked(config, redis_server, far_server, tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, far_server.url)
    settings = Settings(redis_url=redis_server.url, config_dir=config)
    registry = load_registry(config)
    assert queue_settings(registry, settings)[FAR].broker == far_server.url
    assert settings_for_queues(registry, settings, [NEAR]).broker == redis_server.url
    with pytest.raises(ConfigError, match="one worker serves queues of one broker only"):
        settings_for_queues(registry, settings, [NEAR, FAR])
    monkeypatch.delenv(VARIABLE)
    with pytest.raises(ConfigError, match=rf"routes.far.broker_url names \${{{VARIABLE}}}"):
        make_client(redis_server.url, config)
    clash = write_config(tmp_path / "clash", {"hashing": HASHING_MODEL}, {
        "a": {"model": "hashing", "precision": "fp32"},
        "b": {"model": "hashing", "precision": "fp32", "dim": 32,
              "broker_url": "redis://127.0.0.1:1/0"}}, default="a")
    with pytest.raises(ConfigError, match="routes 'a' and 'b' both send to queue"):
        make_client(redis_server.url, clash)


def test_probe_and_autoscaler_read_each_queue_on_its_broker(served, redis_server, far_server,
                                                           config, env, monkeypatch):
    probed = subprocess.run([sys.executable, "-m", "embedq.cli", "probe", "--queue", FAR],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert probed.returncode == 0, probed.stderr  # the far worker, found on the far broker
    monkeypatch.setenv(VARIABLE, far_server.url)
    settings = Settings(redis_url=redis_server.url, config_dir=config)
    scaler = Autoscaler(settings, [NEAR, FAR], Policy(cores=2), env)  # starts no worker
    seen = {o.queue: o for o in scaler.observe(time.monotonic())}
    assert seen[NEAR].ready == 1
    assert seen[FAR].ready == 1


def test_embedq_up_refuses_a_route_with_its_own_broker(env):
    """`embedq up` runs one private Redis; it says so instead of waiting for workers that would
    serve elsewhere."""
    run = subprocess.run([sys.executable, "-m", "embedq.cli", "up", "--no-flower",
                          "--dashboard-port", "0", "--no-gateway"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode != 0
    assert "route(s) far name their own broker_url/cache_url" in run.stderr
