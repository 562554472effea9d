"""Prometheus metrics of the batches: what a scrape of a real prefork worker shows."""

from __future__ import annotations

import urllib.request

from embedq.ops.redis_server import free_port
from tests.support import make_client


def test_worker_exports_metrics(redis_server, start_worker, hashing_config):
    port = free_port()
    start_worker("hashing", "fp32", hashing_config, "-c", "2", EMBEDQ_METRICS_PORT=str(port))
    with make_client(redis_server.url, hashing_config) as client:  # two pool processes serve
        client.embed(["one", "two", "three"], "fast", timeout=60)
        client.embed(["four"], "fast", timeout=60)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'embedq_texts_total{model="hashing",precision="fp32",queue="embed.hashing.fp32"} 4.0' \
        in text
