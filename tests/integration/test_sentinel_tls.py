"""Redis Sentinel over TLS: a TLS-only master and a TLS-only sentinel watching it; the worker,
Celery inside it and a producer reach the master through ``sentinel://…?ssl_ca_certs=…``,
verifying the sentinel's and the master's certificates. (Failover itself is
tests/chaos/test_sentinel.py, in plain TCP.)"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from urllib.parse import urlencode

import numpy as np
import pytest
import redis

from embedq.config.errors import ConfigError
from embedq.ops.processes import stop_processes
from embedq.ops.redis_server import find_redis_server, free_port
from embedq.tasks.tls import check_tls
from tests.support import expected_hashing, make_client, wait_for_consumers, wait_until
from tests.tls_support import TlsRedisServer

MASTER = "mymaster"
QUEUE = "embed.hashing.fp32"


@pytest.fixture(scope="module")
def redis_server(certificates) -> Iterator[TlsRedisServer]:
    """The master: TLS only (overrides conftest's)."""
    with TlsRedisServer(certificates) as server:
        yield server


@pytest.fixture(scope="module")
def sentinel_url(redis_server, certificates, tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("sentinel")
    port = free_port()
    files = certificates.folder
    (folder / "sentinel.conf").write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {folder}\n"
        f"tls-cert-file {files / 'server.crt'}\ntls-key-file {files / 'server.key'}\n"
        f"tls-ca-cert-file {files / 'ca.crt'}\ntls-auth-clients no\ntls-replication yes\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {redis_server.port} 1\n")
    sentinel = subprocess.Popen([find_redis_server(), str(folder / "sentinel.conf"),
                                 "--sentinel"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    query = urlencode({"master_name": MASTER, "ssl_ca_certs": str(certificates.ca)})
    url = f"sentinel://127.0.0.1:{port}/0?{query}"
    try:
        watcher = redis.Redis(host="127.0.0.1", port=port, ssl=True,
                              ssl_ca_certs=str(certificates.ca))
        wait_until(lambda: _knows_master(watcher), timeout=30)
        yield url
    finally:
        stop_processes([sentinel], grace_s=10)


def _knows_master(client: redis.Redis) -> bool:
    try:
        return bool(client.sentinel_master(MASTER))
    except (redis.RedisError, OSError):
        return False


def test_producer_and_worker_through_a_tls_sentinel(sentinel_url, redis_server, start_worker,
                                                    hashing_config):
    start_worker("hashing", "fp32", hashing_config, "-c", "1", EMBEDQ_REDIS_URL=sentinel_url)
    wait_for_consumers(redis_server.url, QUEUE)
    texts = ["through a sentinel", "over tls"]
    with make_client(sentinel_url, hashing_config) as client:
        vectors = client.embed(texts, "fast", timeout=30)
    np.testing.assert_allclose(vectors, expected_hashing(hashing_config, texts), rtol=1e-6)


def test_a_wrong_ca_for_the_sentinel_is_one_clear_error(sentinel_url, certificates):
    wrong = sentinel_url.replace(urlencode({"x": str(certificates.ca)})[2:],
                                 urlencode({"x": str(certificates.wrong_ca)})[2:])
    assert wrong != sentinel_url
    with pytest.raises(ConfigError, match="EMBEDQ_REDIS_URL: TLS to sentinel://") as caught:
        check_tls(wrong, "EMBEDQ_REDIS_URL")
    assert "ssl_ca_certs=<the CA file>" in str(caught.value)
