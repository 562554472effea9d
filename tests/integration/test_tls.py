"""The whole stack against a TLS-only redis-server that asks for client certificates: a test CA
made with ``openssl``, producer -> worker -> reply, the gateway, the dashboard and Flower's
Broker page, each verifying the server. A wrong CA, a wrong host name and a missing client
certificate are each one clear error naming the setting to fix."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from embedq.config.errors import BrokerUnavailableError, ConfigError
from embedq.tasks.tls import check_tls
from tests.http_support import get, serve, shows
from tests.support import (
    expected_hashing,
    make_client,
    wait_for_consumers,
    wait_until,
    worker_env,
)
from tests.tls_support import TlsRedisServer

QUEUE = "embed.hashing.fp32"


@pytest.fixture(scope="module")
def redis_server(certificates) -> Iterator[TlsRedisServer]:
    """This module's Redis: TLS only, client certificates required (overrides conftest's)."""
    with TlsRedisServer(certificates, mutual=True) as server:
        yield server


@pytest.fixture(scope="module")
def served(redis_server, start_worker, hashing_config):
    start_worker("hashing", "fp32", hashing_config, "-c", "1")
    wait_for_consumers(redis_server.url, QUEUE)


def test_producer_worker_reply_over_mutual_tls(served, redis_server, hashing_config):
    assert redis_server.url.startswith("rediss://")
    texts = ["over tls", "verified by default", "over tls"]
    with make_client(redis_server.url, hashing_config) as client:
        vectors = client.embed(texts, "fast", timeout=30)
        assert client.route_status("fast").queue.consumers == 1
    np.testing.assert_allclose(vectors, expected_hashing(hashing_config, texts), rtol=1e-6)


def test_gateway_dashboard_and_flower_over_tls(served, redis_server, hashing_config,
                                               start_gateway, processes):
    _, gateway = start_gateway(hashing_config)
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as sdk:
        assert len(sdk.embeddings.create(model="fast", input=["a", "b"]).data) == 2
    dashboard = serve(processes, redis_server.url, hashing_config, "/healthz",
                       "-m", "embedq.cli", "dashboard")
    wait_until(lambda: shows(f"{dashboard}/api/figures", QUEUE), timeout=30)
    figures = json.loads(get(f"{dashboard}/api/figures"))
    assert figures
    flower = serve(processes, redis_server.url, hashing_config, "/healthcheck",
                    "-m", "celery", "-A", "embedq.ops.flower_app", "flower",
                    "--address=127.0.0.1")
    wait_until(lambda: shows(f"{flower}/broker", QUEUE), timeout=30)


def test_a_wrong_ca_is_one_error_naming_the_setting(redis_server, certificates, hashing_config):
    wrong = redis_server.tls_url(ca=certificates.wrong_ca)
    with pytest.raises(ConfigError, match="not signed by a CA") as caught:
        check_tls(wrong, "EMBEDQ_REDIS_URL")
    assert "EMBEDQ_REDIS_URL" in str(caught.value)
    assert "ssl_ca_certs=" in str(caught.value)
    run = subprocess.run([sys.executable, "-m", "embedq.cli", "worker", "-m", "hashing",
                          "-p", "fp32", "-c", "1"], env=worker_env(wrong, hashing_config),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "EMBEDQ_REDIS_URL: TLS to rediss://127.0.0.1" in run.stderr
    assert "ssl_ca_certs=<the CA file>" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_wrong_host_name_and_a_missing_client_certificate(redis_server):
    with pytest.raises(ConfigError, match="does not name the host") as caught:
        check_tls(redis_server.tls_url(host="localhost"), "EMBEDQ_BROKER_URL")
    assert "EMBEDQ_BROKER_URL" in str(caught.value)
    with pytest.raises(ConfigError, match="ssl_certfile=") as caught:
        check_tls(redis_server.tls_url(client_cert=False), "EMBEDQ_REDIS_URL")
    assert "tls-auth-clients" in str(caught.value)
    check_tls(redis_server.url, "EMBEDQ_REDIS_URL")  # the right files pass


def test_a_producer_with_a_wrong_ca_says_which_setting_to_fix(redis_server, certificates,
                                                             hashing_config):
    wrong = redis_server.tls_url(ca=certificates.wrong_ca)
    with (make_client(wrong, hashing_config) as client,
          pytest.raises(BrokerUnavailableError) as caught):
        client.route_status("fast")
    # The connection error says what to fix; BrokerUnavailableError keeps it as its cause.
    assert "ssl_ca_certs=<the CA file>" in str(caught.value.__cause__)
