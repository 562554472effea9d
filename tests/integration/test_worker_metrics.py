"""Worker metrics: the consumer's hooks, and several processes exported as one sum."""

from __future__ import annotations

import os
import subprocess
import sys

import redis
from prometheus_client import REGISTRY

from embedq.tasks.cache_codec import TierStats
from embedq.worker.metrics import (
    WorkerMetrics,
    metrics_endpoints,
    publish_endpoint,
    withdraw_endpoint,
)

QUEUE = "embed.minilm.fp32"
LABELS = {"queue": QUEUE, "model": "minilm", "precision": "fp32"}

POOL_PROCESS = """
from embedq.worker.metrics import WorkerMetrics
m = WorkerMetrics("embed.minilm.fp32")
m.claimed([0.01, 0.02])
m.batch_started()
m.batch_ended(texts=5, seconds=0.1, failed=1)
m.replied([0.2, 0.3])
"""
PARENT = """
from prometheus_client import generate_latest
from embedq.worker.metrics import exporter_registry
print(generate_latest(exporter_registry(["embed.minilm.fp32"])).decode())
"""


def test_hooks_count_texts_failures_latency_and_cache_deltas():
    metrics = WorkerMetrics(QUEUE)
    value = REGISTRY.get_sample_value
    before = value("embedq_texts_total", LABELS) or 0.0
    metrics.claimed([0.5, 1.5])
    metrics.batch_started()
    metrics.batch_ended(texts=10, seconds=0.2, failed=2)
    metrics.replied([0.7, 2.0])
    metrics.cache_counts({"memory": TierStats(hits=3, misses=7)})
    metrics.cache_counts({"memory": TierStats(hits=5, misses=8)})
    assert value("embedq_texts_total", LABELS) == before + 8
    assert value("embedq_items_failed_total", LABELS) >= 2
    assert value("embedq_batches_in_flight", LABELS) == 0
    assert value("embedq_request_seconds_bucket", {**LABELS, "le": "1.0"}) >= 1
    assert value("embedq_cache_lookups_total", {**LABELS, "tier": "memory", "result": "hit"}) == 5
    assert value("embedq_cache_lookups_total", {**LABELS, "tier": "memory", "result": "miss"}) == 8


def test_several_pool_processes_export_as_one_sum(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(3):  # three pool processes, each with its own pid and files
        subprocess.run([sys.executable, "-c", POOL_PROCESS], env=env, check=True)
    text = subprocess.run([sys.executable, "-c", PARENT], env=env, check=True,
                          capture_output=True, text=True).stdout
    labels = 'model="minilm",precision="fp32",queue="embed.minilm.fp32"'
    assert f"embedq_texts_total{{{labels}}} 12.0" in text
    assert f"embedq_items_failed_total{{{labels}}} 3.0" in text
    assert f'embedq_request_seconds_count{{{labels}}} 6.0' in text
    assert f"embedq_worker_memory_bytes{{{labels}}}" in text


def test_workers_advertise_their_metrics_endpoint(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    publish_endpoint(client, "http://w1:9100/metrics", ttl_s=30)
    publish_endpoint(client, "http://w2:9100/metrics", ttl_s=-1)  # already expired
    assert metrics_endpoints(client) == ["http://w1:9100/metrics"]
    withdraw_endpoint(client, "http://w1:9100/metrics")
    assert metrics_endpoints(client) == []


def test_the_exporter_serves_and_advertises_itself(redis_server):
    import urllib.request

    from embedq.config.settings import Settings
    from embedq.ops.redis_server import free_port
    from embedq.worker.metrics import Exporter

    exporter = Exporter(Settings(redis_url=redis_server.url), [QUEUE])
    url = exporter.start(free_port())
    client = redis.Redis.from_url(redis_server.url)
    assert url in metrics_endpoints(client)
    with urllib.request.urlopen(url, timeout=5) as response:
        assert "embedq_worker_memory_bytes" in response.read().decode()
    exporter.stop()
    assert url not in metrics_endpoints(client)
