"""The gateway's Prometheus metrics, in one registry per app (tests build many apps).

Requests by use case and status, texts by use case, requests in progress and a latency
histogram: what a dashboard needs next to the workers' own metrics to split the time between
the gateway and the queue. Unknown use cases are counted under ``-`` so that a client sending
random model names cannot grow the label set without bound.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNKNOWN = "-"


class GatewayMetrics:
    """Counters and histograms of one gateway process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("embedq_gateway_requests", "HTTP requests by use case and status",
                                ["use_case", "status"], registry=self.registry)
        self.texts = Counter("embedq_gateway_texts", "Texts embedded by use case",
                             ["use_case"], registry=self.registry)
        self.in_progress = Gauge("embedq_gateway_requests_in_progress",
                                 "Requests being served", registry=self.registry)
        self.latency = Histogram("embedq_gateway_request_seconds",
                                 "Time from request to response, by use case",
                                 ["use_case"], buckets=_BUCKETS, registry=self.registry)

    def observe(self, use_case: str | None, status: int, texts: int, seconds: float) -> None:
        """Count one finished ``/v1/embeddings`` request."""
        label = use_case or UNKNOWN
        self.requests.labels(label, str(status)).inc()
        if status == 200:
            self.texts.labels(label).inc(texts)
        self.latency.labels(label).observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
