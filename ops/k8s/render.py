"""Render the manifests for the configured routes into a folder a user can `kubectl apply`.

One file per role, in apply order: the config, the two Redis (and those routes name for
themselves, `route_redis`), one Deployment and one KEDA
ScaledObject per queue (``embedq routes`` lists them), the gateway, the dashboard, Flower. A
``README.txt`` beside them names the Secrets to create first and what scales on what.
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from embedq.config.registry import Registry
from embedq.ops.k8s import services
from embedq.ops.k8s.objects import SECRETS, Options
from embedq.ops.k8s.route_redis import route_redis
from embedq.ops.k8s.sizing import footprint
from embedq.ops.k8s.workers import (
    BUSY_PER_REPLICA,
    deployment,
    plan_of,
    scaled_object,
    worker_name,
)
from embedq.ops.stack import queues_of
from embedq.tasks.names import route_queue


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types here
    """Plain YAML without anchors: a reader sees every label set spelled out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _raw(config_dir: Path | None, name: str) -> dict[str, Any]:
    base = Path(str(resources.files("embedq.config"))) if config_dir is None else config_dir
    found: dict[str, Any] = json.loads((base / name).read_text(encoding="utf-8"))
    return found


def chained_queues(registry: Registry) -> set[str]:
    """Queues of routes with a fallback chain: kept at one replica, never scaled to zero."""
    return {route_queue(route.served_by(model)) for route in registry.routes.values()
            if route.fallback for model in route.chain}


def render(registry: Registry, config_dir: Path | None,
           options: Options) -> dict[str, list[dict[str, Any]]]:
    """File name -> the objects it holds."""
    keep = chained_queues(registry)
    options = replace(options, route_redis=tuple(route_redis(registry)))
    files: dict[str, list[dict[str, Any]]] = {
        "00-config.yaml": [services.config_map(_raw(config_dir, "models.json"),
                                               _raw(config_dir, "routes.json"), options)],
        "10-redis-broker.yaml": services.broker(options),
        "11-redis-cache.yaml": services.cache(options),
    }
    for server in options.route_redis:  # a route's own broker or cache (`route_redis`)
        make = services.broker if server.role == "broker" else services.cache
        files[f"12-{server.name}.yaml"] = make(options, server.name, server.component)
    for queue in queues_of(registry):
        plan = plan_of(queue, queue in keep)
        files[f"20-{worker_name(plan)}.yaml"] = [deployment(plan, options),
                                                 scaled_object(plan, options)]
    files["30-gateway.yaml"] = services.gateway(options)
    files["31-dashboard.yaml"] = services.dashboard(options)
    files["32-flower.yaml"] = services.flower(options)
    return files


def guide(registry: Registry, options: Options) -> str:
    """What to do before and after `kubectl apply`, and what each worker scales on."""
    secrets = "\n".join(
        f"  kubectl -n {options.namespace} create secret generic {name} "
        + " ".join(f"--from-literal={key}=..." for key in keys)
        for name, keys in SECRETS.items())
    rows = []
    for queue in queues_of(registry):
        plan = plan_of(queue, queue in chained_queues(registry))
        fp = footprint(plan.model, plan.precision)
        rows.append(f"  {worker_name(plan)}: {plan.min_replicas}..{options.max_replicas} pods; "
                    f"+1 per {round(fp.texts_per_s * options.target_drain_s)} texts waiting "
                    f"or while the oldest waits > {options.target_drain_s}s, or per "
                    f"{BUSY_PER_REPLICA} busy processes; sizing: "
                    f"{fp.source}")
    return (f"embedq on Kubernetes (namespace {options.namespace}, image {options.image})\n\n"
            f"1. kubectl create namespace {options.namespace}\n"
            "2. the Secrets (the Redis password goes into URLs: use hex, e.g. openssl rand "
            "-hex 24;\n   flower basic-auth is user:password; gateway api-keys is key1,key2):\n"
            f"{secrets}\n"
            "3. KEDA (keda.sh) installed, and a Prometheus at "
            f"{options.prometheus_url}\n   scraping embedq-dashboard:8050/metrics "
            "(basic auth: the embedq-dashboard Secret) and the worker pods\n"
            "   (annotated prometheus.io/scrape, port 9100)\n"
            "4. kubectl apply -f .\n\nWorkers (one core per pod):\n" + "\n".join(rows) + "\n")


def write(registry: Registry, config_dir: Path | None, options: Options, out: Path) -> list[Path]:
    """Write every file (and README.txt) into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objects in render(registry, config_dir, options).items():
        path = out / name
        path.write_text(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=100),
                        encoding="utf-8")
        written.append(path)
    (out / "README.txt").write_text(guide(registry, options), encoding="utf-8")
    return [*written, out / "README.txt"]
