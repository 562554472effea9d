"""Worker metrics: several pool processes exported as one sum, memory, and the advertisement
that lets the dashboard and `embedq eval` find a worker's /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest
import redis

from embedq.config.settings import Settings
from embedq.ops.redis_server import free_port
from embedq.tasks.metrics_endpoints import metrics_endpoints, publish_endpoint, withdraw_endpoint
from embedq.worker.metrics import Exporter
from tests.support import wait_until

QUEUE = "embed.minilm.fp32"
POOL_PROCESS = """
from embedq.tasks.cache_codec import TierStats
from embedq.worker.metrics import BatchFacts, BatchMetrics
metrics = BatchMetrics()
metrics.observe(BatchFacts("embed.minilm.fp32", messages=2, texts=5, failed=1, seconds=0.1,
                           enqueued_at=(100.0, 100.5), claimed_at=101.0, answered_at=101.2))
metrics.observe_cache("embed.minilm.fp32", {"memory": TierStats(hits=3, misses=1)})
"""
PARENT = """
import sys, urllib.request
from embedq.config.settings import Settings
from embedq.worker.metrics import Exporter
url = Exporter(Settings(redis_url=sys.argv[1]), ["embed.minilm.fp32"]).start(int(sys.argv[2]))
print(urllib.request.urlopen(url, timeout=5).read().decode())
"""


def test_several_pool_processes_export_as_one_sum(tmp_path, redis_server):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(3):  # three pool processes, each with its own pid and files
        subprocess.run([sys.executable, "-c", POOL_PROCESS], env=env, check=True)
    text = subprocess.run([sys.executable, "-c", PARENT, redis_server.url, str(free_port())],
                          env=env, check=True, capture_output=True, text=True).stdout
    labels = 'model="minilm",precision="fp32",queue="embed.minilm.fp32"'
    assert f"embedq_texts_total{{{labels}}} 15.0" in text
    assert f"embedq_messages_failed_total{{{labels}}} 3.0" in text
    assert f'embedq_request_seconds_count{{{labels}}} 6.0' in text
    assert 'embedq_cache_lookups_total{model="minilm",precision="fp32",queue="embed.minilm.fp32",'\
        'result="hit",tier="memory"} 9.0' in text
    assert f"embedq_queue_wait_seconds_count{{{labels}}} 6.0" in text
    assert f"embedq_worker_memory_bytes{{{labels}}}" in text


def test_workers_advertise_their_metrics_endpoint(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    publish_endpoint(client, "http://w1:9100/metrics", ttl_s=30)
    publish_endpoint(client, "http://w2:9100/metrics", ttl_s=-1)  # already expired
    assert "http://w1:9100/metrics" in metrics_endpoints(client)
    assert "http://w2:9100/metrics" not in metrics_endpoints(client)
    withdraw_endpoint(client, "http://w1:9100/metrics")
    assert "http://w1:9100/metrics" not in metrics_endpoints(client)


def test_the_exporter_serves_and_withdraws_itself(redis_server, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    exporter = Exporter(Settings(redis_url=redis_server.url), [QUEUE])
    url = exporter.start(free_port())
    client = redis.Redis.from_url(redis_server.url)
    assert url in metrics_endpoints(client)
    with urllib.request.urlopen(url, timeout=5) as response:
        assert "embedq_worker_memory_bytes" in response.read().decode()
    exporter.stop()
    assert url not in metrics_endpoints(client)


@pytest.mark.model
def test_a_model_fallback_at_start_is_on_the_workers_metrics(redis_server, start_worker,
                                                              tmp_path):
    """The export fails in the worker command, before Celery starts: still counted on /metrics."""
    (tmp_path / "onnx").write_text("a file where the export folder should be")
    port = free_port()
    start_worker("minilm", "fp32", None, "-c", "1", EMBEDQ_MODEL_CACHE_DIR=str(tmp_path),
                 EMBEDQ_FP32_BACKEND="onnx", EMBEDQ_METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: url in metrics_endpoints(redis.Redis.from_url(redis_server.url)),
               timeout=120)
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert 'embedq_model_fallbacks_total{model="minilm",stage="export"} 1.0' in text
