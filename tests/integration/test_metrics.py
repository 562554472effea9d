"""Prometheus metrics of the batcher: what a scrape of a real worker shows."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry

from embedq.ops.redis_server import free_port
from embedq.worker.metrics import BatchMetrics
from tests.support import make_client


def test_batch_metrics_count_texts_and_outcomes():
    metrics = BatchMetrics(CollectorRegistry())
    metrics.batch_started("embed.minilm.fp32", messages=3, texts=40)
    metrics.batch_ended("embed.minilm.fp32", 0.2, lost=False)
    metrics.batch_started("embed.minilm.fp32", messages=1, texts=1)
    metrics.batch_ended("embed.minilm.fp32", 0.1, lost=True)
    value = metrics.registry.get_sample_value
    labels = {"queue": "embed.minilm.fp32", "model": "minilm", "precision": "fp32"}
    assert value("embedq_texts_total", labels) == 41
    assert value("embedq_messages_total", labels) == 4
    assert value("embedq_batches_total", {**labels, "outcome": "lost"}) == 1
    assert value("embedq_batches_in_flight", labels) == 0
    assert value("embedq_batch_seconds_count", labels) == 1


def test_worker_exports_metrics(redis_server, start_worker, hashing_config):
    port = free_port()
    worker = start_worker("hashing", "fp32", hashing_config, "-c", "1",
                          EMBEDQ_METRICS_PORT=str(port))
    client = make_client(redis_server.url, hashing_config)
    client.embed(["one", "two", "three"], "fast", timeout=60)
    worker.wait_for("metrics_exporter")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'embedq_texts_total{model="hashing",precision="fp32",queue="embed.hashing.fp32"} 3.0' \
        in text
