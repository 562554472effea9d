"""A worker Deployment and a KEDA ScaledObject per queue.

Each pod runs one pool process with one compute thread (one process per core measured best), so
a pod is one core and KEDA's replica count is the pool size. KEDA scales on what a worker
consumes, texts, not messages (one message holds 1 to ``EMBEDQ_CHUNK_SIZE`` texts): one replica
per ``texts_per_s x target_drain_s`` texts waiting, and more while the oldest message is older
than the drain target (both from the dashboard's ``/metrics``), or while the pods are busy
(seconds spent embedding per second, from the workers' own ``/metrics``: a producer's
``embed_many`` keeps its backlog at home, so the list alone may stay short). With
``minReplicaCount: 0`` an idle queue has no pod; the first message activates it (the request
waits on the queue meanwhile: nothing is refused for want of a consumer). A queue of a route
with a fallback chain keeps one replica: with none, producers would move that route to its
fallback model instead of waking the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from embedq.ops.k8s.objects import Options, labels, metadata, shared_env, volume_mounts, volumes
from embedq.ops.k8s.sizing import footprint, memory_limit_mib, memory_request_mib
from embedq.tasks.names import parse_queue

METRICS_PORT = 9100
BUSY_PER_REPLICA = "0.8"  # one replica per 0.8 busy processes: grow before all are saturated
_PROBE_PERIOD_S = 10


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """One queue's worker: its model, precision and scaling bounds."""

    queue: str
    model: str
    precision: str
    min_replicas: int


def worker_name(plan: WorkerPlan) -> str:
    """``embedq-worker-<model>-<precision>`` (what compose calls ``worker-<model>-<precision>``)."""
    return f"embedq-worker-{plan.model}-{plan.precision}".lower().replace("_", "-")


def plan_of(queue: str, keep_one: bool) -> WorkerPlan:
    """The plan of a queue named ``embed.<model>.<precision>``."""
    model, precision = parse_queue(queue) or (queue, "fp32")
    return WorkerPlan(queue, model, precision, 1 if keep_one else 0)


def _probe(plan: WorkerPlan, *, failures: int, liveness: bool = False) -> dict[str, Any]:
    command = ["embedq", "probe", "--queue", plan.queue] + (["--broker-down-ok"] if liveness
                                                              else [])
    return {"exec": {"command": command}, "periodSeconds": _PROBE_PERIOD_S * (3 if liveness
                                                                                else 1),
            "timeoutSeconds": 8, "failureThreshold": failures}


def deployment(plan: WorkerPlan, options: Options) -> dict[str, Any]:
    """The worker Deployment: probes on the loaded model, resources from its footprint."""
    fp = footprint(plan.model, plan.precision)
    # The startup probe allows three first starts (export and checks on an empty model cache).
    startup_failures = max(6, math.ceil(3 * fp.first_start_s / _PROBE_PERIOD_S))
    container = {
        "name": "worker",
        "image": options.image,
        "command": ["embedq", "worker", "--model", plan.model, "--precision", plan.precision,
                    "--concurrency", "1", "--threads", "1"],
        "env": [*shared_env(options),
                {"name": "EMBEDQ_METRICS_PORT", "value": str(METRICS_PORT)},
                {"name": "EMBEDQ_METRICS_ADDRESS", "value": "0.0.0.0"}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "resources": {
            "requests": {"cpu": "1", "memory": f"{memory_request_mib(fp)}Mi"},
            "limits": {"cpu": "1", "memory": f"{memory_limit_mib(fp)}Mi"},
        },
        "startupProbe": _probe(plan, failures=startup_failures),
        "readinessProbe": _probe(plan, failures=3),
        "livenessProbe": _probe(plan, failures=3, liveness=True),
        "volumeMounts": volume_mounts(),
    }
    selector = labels("worker", plan.queue)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        # No spec.replicas: KEDA owns the count, and `kubectl apply` must not reset it.
        "metadata": metadata(worker_name(plan), options, selector,
                             {"embedq/sizing": fp.source[:250]}),
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT)}},
                "spec": {
                    # Warm shutdown finishes the batch in hand (at most a minute) first.
                    "terminationGracePeriodSeconds": 90,
                    "containers": [container],
                    "volumes": volumes(),
                },
            },
        },
    }


def scaled_object(plan: WorkerPlan, options: Options) -> dict[str, Any]:
    """KEDA scales the Deployment on texts waiting and on the oldest message's age."""
    fp = footprint(plan.model, plan.precision)
    per_replica = max(1, round(fp.texts_per_s * options.target_drain_s))
    where = f'queue="{plan.queue}"'
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": metadata(worker_name(plan), options, labels("worker", plan.queue)),
        "spec": {
            "scaleTargetRef": {"name": worker_name(plan)},
            "minReplicaCount": plan.min_replicas,
            "maxReplicaCount": options.max_replicas,
            "pollingInterval": 10,
            # A warm pod stays a while after its queue empties: a cold start costs seconds.
            "cooldownPeriod": options.idle_to_zero_s,
            "triggers": [
                {"type": "prometheus", "name": "texts-waiting", "metricType": "AverageValue",
                 "metadata": {
                     "serverAddress": options.prometheus_url,
                     "query": f"sum(embedq_queue_texts_waiting{{{where}}}) or vector(0)",
                     # One replica per this many texts: what one process drains in the target.
                     "threshold": str(per_replica),
                     "activationThreshold": "0",
                 }},
                {"type": "prometheus", "name": "oldest-age", "metricType": "Value",
                 "metadata": {
                     "serverAddress": options.prometheus_url,
                     "query": f"max(embedq_queue_oldest_age_seconds{{{where}}}) or vector(0)",
                     # Value: replicas grow in proportion while the oldest waits longer.
                     "threshold": str(options.target_drain_s),
                     "activationThreshold": "0",
                 }},
                {"type": "prometheus", "name": "busy", "metricType": "AverageValue",
                 "metadata": {
                     "serverAddress": options.prometheus_url,
                     # Seconds spent embedding per second, over every pod: busy processes.
                     "query": f"sum(rate(embedq_batch_seconds_sum{{{where}}}[1m])) or vector(0)",
                     # A producer's embed_many keeps its backlog at home (only a window of
                     # messages waits), so a pool can be the bottleneck with a short list.
                     "threshold": BUSY_PER_REPLICA,
                 }},
            ],
        },
    }
