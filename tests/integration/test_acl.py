"""A Redis user per role (`embedq acl --apply`) on a TLS-only redis-server: the happy path works
with each role's own user (worker, producer, gateway, dashboard, Flower, dead-letters
operator) without one refused command, and each role is refused (NOPERM) what it must not do."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import openai
import pytest
import redis

from tests.http_support import get, serve, shows
from tests.support import (
    HASHING_MODEL,
    expected_hashing,
    make_client,
    wait_for_consumers,
    wait_until,
    worker_env,
    write_config,
)
from tests.tls_support import TlsRedisServer, apply_acl

QUEUE, OTHER = "embed.hashing.fp32", "embed.other.fp32"
ADMIN_PASSWORD = "admin-Secret-4c1d"


@pytest.fixture(scope="module")
def redis_server(certificates) -> Iterator[TlsRedisServer]:
    """TLS only, the default user behind a password (the admin); overrides conftest's."""
    with TlsRedisServer(certificates, password=ADMIN_PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("acl-config"),
                        {"hashing": HASHING_MODEL, "other": HASHING_MODEL},
                        {"fast": {"model": "hashing"}, "other": {"model": "other"}},
                        default="fast")


@pytest.fixture(scope="module")
def admin(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def urls(redis_server, config, tmp_path_factory, admin) -> dict[str, str]:
    """Apply the users with the CLI; each role's URL."""
    urls = apply_acl(redis_server, config, tmp_path_factory.mktemp("secrets"), "web=fast",
                     "batch", "gateway")
    admin.execute_command("ACL", "LOG", "RESET")
    return urls


@pytest.fixture(scope="module")
def served(urls, start_worker, config, redis_server):
    start_worker("hashing", "fp32", config, "-c", "1",
                 EMBEDQ_REDIS_URL=urls[f"embedq-worker-{QUEUE}"])
    wait_for_consumers(redis_server.url, QUEUE)


def _refusals(admin: redis.Redis) -> list[str]:
    entries = admin.execute_command("ACL", "LOG")
    return [f"{e.get(b'username')} {e.get(b'reason')} {e.get(b'object')} {e.get(b'context')}"
            for e in (dict(zip(entry[::2], entry[1::2], strict=True)) if isinstance(entry, list)
                      else entry for entry in entries)]


def test_each_role_works_with_its_own_user(served, urls, config, admin, start_gateway,
                                           processes):
    texts = ["least privilege", "a user per role", "least privilege"]
    with make_client(urls["embedq-producer-web"], config, producer_id="web") as client:
        vectors = client.embed(texts, "fast", timeout=30)
        assert client.route_status("fast").queue.consumers == 1
    np.testing.assert_allclose(vectors, expected_hashing(config, texts), rtol=1e-6)
    with make_client(urls["embedq-producer-web"], config, producer_id="web") as client:
        again = client.embed_detailed(texts[:1], "fast", timeout=30)  # from the cache now
        bulk = [f"bulk text {i}" for i in range(40)]  # the bulk list, in chunks
        blocks = list(client.embed_many(bulk, "fast", chunk_size=8, timeout=60))
        client.submit(["cancelled before it is served"], "fast").cancel()  # a cancel mark
    assert again.cached[0]
    np.testing.assert_allclose(np.concatenate(blocks), expected_hashing(config, bulk), rtol=1e-6)
    # The gateway serves (and its /health reports) every use case: a producer id of its own.
    _, gateway = start_gateway(config, EMBEDQ_REDIS_URL=urls["embedq-producer-gateway"],
                               EMBEDQ_PRODUCER_ID="gateway")
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as sdk:
        assert len(sdk.embeddings.create(model="fast", input=["x", "y"]).data) == 2
    dashboard = serve(processes, urls["embedq-dashboard"], config, "/healthz",
                       "-m", "embedq.cli", "dashboard")
    wait_until(lambda: shows(f"{dashboard}/api/figures", QUEUE), timeout=30)
    assert "embedq_queue_texts_waiting" in get(f"{dashboard}/metrics").decode()
    flower = serve(processes, urls["embedq-flower"], config, "/healthcheck",
                    "-m", "celery", "-A", "embedq.ops.flower_app", "flower",
                    "--address=127.0.0.1")
    wait_until(lambda: shows(f"{flower}/broker", QUEUE), timeout=30)
    listed = subprocess.run([sys.executable, "-m", "embedq.cli", "dead-letters", "list",
                             "--json"], env=worker_env(urls["embedq-dead-letters"], config),
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    json.loads(listed.stdout or "[]")
    assert _refusals(admin) == []  # no role lacked anything on the happy path


def _refused(url: str, *command: object) -> None:
    with redis.Redis.from_url(url) as client, pytest.raises(redis.exceptions.NoPermissionError):
        client.execute_command(*command)


def test_each_role_is_refused_what_it_must_not_do(urls, admin):
    admin.rpush("embedq:v1:reply:batch:1-abc", b"someone else's reply")
    producer = urls["embedq-producer-web"]
    for command in (("LPOP", QUEUE), ("LRANGE", QUEUE, 0, -1), ("BLMOVE", QUEUE, "x", "RIGHT",
                    "LEFT", 0.01), ("LPOP", "embedq:v1:reply:batch:1-abc"),
                    ("LRANGE", "embedq:v1:reply:batch:1-abc", 0, -1), ("FLUSHALL",),
                    ("LPUSH", OTHER, "not my use case"), ("SET", "embedq:v1:vec:hashing:x", 1),
                    ("KEYS", "*")):
        _refused(producer, *command)
    worker = urls[f"embedq-worker-{QUEUE}"]
    for command in (("LPUSH", OTHER, "x"), ("LPOP", OTHER), ("LLEN", OTHER),
                    ("LRANGE", "embedq:v1:reply:batch:1-abc", 0, -1),
                    ("GET", "embedq:v1:model:other:fp32"), ("FLUSHDB",), ("CONFIG", "GET", "*")):
        _refused(worker, *command)
    dashboard = urls["embedq-dashboard"]
    for command in (("LPUSH", QUEUE, "x"), ("DEL", QUEUE), ("SET", "k", "v"),
                    ("LPOP", "embedq:v1:reply:batch:1-abc"), ("FLUSHALL",)):
        _refused(dashboard, *command)
    assert admin.lrange("embedq:v1:reply:batch:1-abc", 0, -1) == [b"someone else's reply"]
