"""Every metric the Grafana dashboard and the KEDA example use is one embedq exports."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from prometheus_client import CollectorRegistry

from embedq.ops.dashboard.exporter import queue_registry
from embedq.worker.metrics import MemoryCollector, _families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_SUFFIXES = re.compile(r"_(bucket|sum|count)$")


def exported() -> set[str]:
    """Names as a scrape shows them (counters with _total; histogram suffixes stripped)."""
    names = {family.name for family in queue_registry(lambda: []).collect()}
    families = _families()
    for item in fields(families):
        metric = getattr(families, item.name)
        names.add(metric._name + ("_total" if metric._type == "counter" else ""))
    memory = CollectorRegistry()
    memory.register(MemoryCollector(["embed.x.fp32"]))
    return names | {family.name for family in memory.collect()}


def used(text: str) -> set[str]:
    return {_SUFFIXES.sub("", name) for name in re.findall(r"\bembedq_[a-z0-9_]+", text)}


def test_grafana_and_keda_use_only_exported_metrics():
    documents = [DEPLOY / "grafana" / "embedq.json",
                 DEPLOY / "kubernetes" / "keda-scaledobject.yaml"]
    wanted = set().union(*(used(path.read_text()) for path in documents))
    assert "embedq_queue_depth" in wanted
    assert "embedq_request_seconds" in wanted
    assert wanted <= exported(), sorted(wanted - exported())
