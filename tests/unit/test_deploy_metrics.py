"""Every metric the Grafana dashboard and the Kubernetes manifests use is one embedq exports."""

from __future__ import annotations

import re
from pathlib import Path

from embedq.ops.dashboard.exporter import queue_registry

ROOT = Path(__file__).resolve().parents[2]
_SUFFIXES = re.compile(r"_(bucket|sum|count)$")


def exported() -> set[str]:
    """The queue gauges, and every family the worker module defines (as a scrape names them)."""
    names = {family.name for family in queue_registry(lambda: []).collect()}
    source = (ROOT / "worker" / "metrics.py").read_text()
    defined = r'(?:Counter|Histogram|Gauge|GaugeMetricFamily)\(\s*"(embedq_\w+)"'
    return names | set(re.findall(defined, source))


def used(text: str) -> set[str]:
    return {_SUFFIXES.sub("", name) for name in re.findall(r"\bembedq_[a-z0-9_]+", text)}


def test_grafana_and_keda_use_only_exported_metrics():
    documents = [ROOT / "deploy" / "grafana" / "embedq.json",
                 *sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))]
    wanted = set().union(*(used(path.read_text()) for path in documents))
    assert "embedq_queue_depth" in wanted
    assert "embedq_queue_texts_waiting" in wanted  # KEDA's triggers
    assert "embedq_queue_wait_seconds" in wanted
    assert wanted <= exported(), sorted(wanted - exported())
