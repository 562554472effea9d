"""No secret leaks: the whole stack with passwords, TLS and keys, then every log line, metric,
error message, Flower page and dashboard answer is searched for each secret.

The stack: a TLS-only redis-server (client certificates required) whose admin has a password,
an ACL user per role, a worker serving /metrics, the gateway with scoped keys, the dashboard
and Flower behind basic auth. Traffic includes the refusals that carry messages: wrong keys,
a use case out of scope, a rate exceeded, a wrong Redis password, a wrong dashboard password.
"""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest
import redis

from embedq.config.errors import BrokerUnavailableError
from embedq.config.settings import Settings
from embedq.ops.redis_server import free_port
from tests.http_support import answers, get, get_any, serve, shows
from tests.support import (
    HASHING_MODEL,
    make_client,
    wait_for_consumers,
    wait_until,
    worker_env,
    write_config,
)
from tests.tls_support import TlsRedisServer, apply_acl

QUEUE = "embed.hashing.fp32"
ADMIN = "adminPW-7d1f2a9c"
SCOPED, PLAIN, METERED = "sk-scoped-c0ffee11", "sk-plain-deadbe22", "sk-metered-f00d33"
DASHBOARD = ("ops", "dashPW-51ab7e")
FLOWER = ("flower", "flowerPW-9c2e4d")


@pytest.fixture(scope="module")
def redis_server(certificates):
    with TlsRedisServer(certificates, mutual=True, password=ADMIN) as server:
        yield server


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("leak-config"),
                        {"hashing": HASHING_MODEL, "other": HASHING_MODEL},
                        {"fast": {"model": "hashing"}, "etl": {"model": "hashing"},
                         "other": {"model": "other"}}, default="fast")


def _secrets(urls: dict[str, str], certificates) -> list[str]:
    """Every secret of the stack, and the body of each private key."""
    passwords = [redis.connection.parse_url(url)["password"] for url in urls.values()]
    keys = [certificates.file(name).read_text().splitlines()[1]
            for name in ("client.key", "server.key", "ca.key")]
    return [ADMIN, SCOPED, PLAIN, METERED, DASHBOARD[1], FLOWER[1], *passwords, *keys]


def test_no_secret_in_any_log_metric_error_or_page(redis_server, certificates, config,
                                                   tmp_path_factory, start_worker,
                                                   start_gateway, processes):
    urls = apply_acl(redis_server, config, tmp_path_factory.mktemp("secrets"), "gateway")
    seen: list[str] = []  # everything a person or a scraper could read

    metrics_port = free_port()
    worker = start_worker("hashing", "fp32", config, "-c", "1",
                          EMBEDQ_REDIS_URL=urls[f"embedq-worker-{QUEUE}"],
                          EMBEDQ_METRICS_PORT=str(metrics_port), EMBEDQ_LOG_LEVEL="DEBUG")
    wait_for_consumers(redis_server.url, QUEUE)

    keys = tmp_path_factory.mktemp("keys") / "gateway-keys"
    keys.write_text(f"{PLAIN}\n{SCOPED} use_cases=fast\n{METERED} rate=0.1 burst=1\n")
    gateway, base = start_gateway(config, EMBEDQ_REDIS_URL=urls["embedq-producer-gateway"],
                                  EMBEDQ_PRODUCER_ID="gateway", EMBEDQ_LOG_LEVEL="DEBUG",
                                  EMBEDQ_GATEWAY_API_KEYS_FILE=str(keys))
    for key, use_case, texts in ((PLAIN, "fast", ["a"]), (SCOPED, "etl", ["b"]),
                                 (METERED, "fast", ["c"]), (METERED, "fast", ["d"]),
                                 (SCOPED + "x", "fast", ["e"]), (PLAIN, "nope", ["f"])):
        with openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0) as sdk:
            try:
                sdk.embeddings.create(model=use_case, input=texts)
            except openai.APIStatusError as exc:
                seen.append(exc.response.text)
    seen += [get_any(f"{base}{path}")[1].decode() for path in ("/metrics", "/health",
                                                               "/v1/models")]

    dashboard = serve(processes, urls["embedq-dashboard"], config, "/healthz", "-m",
                      "embedq.cli", "dashboard", EMBEDQ_DASHBOARD_USER=DASHBOARD[0],
                      EMBEDQ_DASHBOARD_PASSWORD=DASHBOARD[1])
    wait_until(lambda: shows(f"{dashboard}/api/figures", QUEUE, DASHBOARD), timeout=30)
    seen += [get_any(f"{dashboard}{path}", auth)[1].decode(errors="replace")
             for path in ("/", "/api/figures", "/metrics")
             for auth in (DASHBOARD, (DASHBOARD[0], "wrong"))]

    flower = serve(processes, urls["embedq-flower"], config, "/healthcheck", "-m", "celery",
                   "-A", "embedq.ops.flower_app", "flower", "--address=127.0.0.1",
                   auth=FLOWER, FLOWER_BASIC_AUTH=":".join(FLOWER))
    wait_until(lambda: shows(f"{flower}/broker", QUEUE, FLOWER), timeout=30)
    wait_until(lambda: answers(f"{flower}/api/workers?refresh=1", FLOWER), timeout=30)
    seen += [get_any(f"{flower}{path}", FLOWER)[1].decode(errors="replace")
             for path in ("/", "/broker", "/workers", "/tasks", "/api/workers?refresh=1",
                          "/api/tasks", "/metrics", "/dashboard")]
    seen.append(get(f"http://127.0.0.1:{metrics_port}/metrics").decode())

    # Wrong passwords and a wrong CA: the errors people read.
    wrong = redis_server.tls_url(user="embedq-producer-gateway", password=ADMIN + "-wrong")
    with make_client(wrong, config) as client, pytest.raises(BrokerUnavailableError) as caught:
        client.route_status("fast")
    seen += [str(caught.value), repr(caught.value), str(caught.value.__cause__)]
    run = subprocess.run([sys.executable, "-m", "embedq.cli", "dead-letters", "list"],
                         env=worker_env(wrong, config), capture_output=True, text=True,
                         timeout=60)
    seen += [run.stdout, run.stderr]
    settings = Settings(redis_url=wrong, gateway_api_keys=PLAIN,  # type: ignore[arg-type]
                        dashboard_password=DASHBOARD[1], flower_password=FLOWER[1])
    seen += [repr(settings), str(settings)]

    for process in (gateway, worker, *processes):
        seen.append(process.stop())
    text = "\n".join(seen)
    # What was searched did say what happened, with URLs masked:
    for said in ("request refused", "may not use 'etl'", "over its rate",
                 "invalid username-password", f"rediss://embedq-worker-{QUEUE}:**@",
                 "rediss://embedq-flower:**@", QUEUE):
        assert said in text
    leaks = [(secret, text[max(0, text.find(secret) - 80):text.find(secret) + 40])
             for secret in _secrets(urls, certificates) for text in seen if secret in text]
    assert leaks == []
