"""The parts every rendered object shares: options, names, labels, environment and volumes.

Credentials never appear in the manifests: they come from Secrets you create (see
`SECRETS`), through ``secretKeyRef``; Kubernetes expands ``$(REDIS_PASSWORD)`` inside the Redis
URLs from the variable defined before them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embedq.ops.k8s.route_redis import RouteRedis, env_of

CONFIG_DIR = "/etc/embedq"
MODELS_DIR = "/models"
BROKER = "embedq-broker"
CACHE = "embedq-cache"
CONFIG_MAP = "embedq-config"
# Secret name -> keys it must hold (kubectl create secret generic NAME --from-literal=KEY=...).
SECRETS = {
    "embedq-redis": ["password"],
    "embedq-flower": ["basic-auth"],
    "embedq-dashboard": ["user", "password"],
    "embedq-gateway": ["api-keys"],
}


@dataclass(frozen=True, slots=True)
class Options:
    """What a user chooses at render time (`embedq k8s render --help`)."""

    namespace: str = "embedq"
    image: str = "embedq:0.1.0"
    prometheus_url: str = "http://prometheus.monitoring.svc.cluster.local:9090"
    max_replicas: int = 8
    target_drain_s: int = 30
    idle_to_zero_s: int = 300
    cache_maxmemory: str = "1gb"
    broker_storage: str = "8Gi"
    route_redis: tuple[RouteRedis, ...] = ()  # filled by the render from routes.json


def labels(component: str, queue: str | None = None) -> dict[str, str]:
    """Selector labels: the app, the role, and for a worker its queue."""
    found = {"app.kubernetes.io/name": "embedq", "app.kubernetes.io/component": component}
    if queue is not None:
        found["embedq/queue"] = queue
    return found


def metadata(name: str, options: Options, selector: dict[str, str],
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An object's metadata in the chosen namespace."""
    found: dict[str, Any] = {"name": name, "namespace": options.namespace,
                             "labels": {**selector, "app.kubernetes.io/part-of": "embedq"}}
    if annotations:
        found["annotations"] = annotations
    return found


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable read from a Secret."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def shared_env(options: Options) -> list[dict[str, Any]]:
    """Broker and cache URLs (password from the Secret; the routes' own too), config, model
    cache, JSON logs."""
    return [
        secret_env("REDIS_PASSWORD", "embedq-redis", "password"),
        {"name": "EMBEDQ_REDIS_URL", "value": f"redis://:$(REDIS_PASSWORD)@{BROKER}:6379/0"},
        {"name": "EMBEDQ_CACHE_URL", "value": f"redis://:$(REDIS_PASSWORD)@{CACHE}:6379/0"},
        *env_of(options.route_redis),  # the routes' own brokers and caches, by variable
        {"name": "EMBEDQ_CONFIG_DIR", "value": CONFIG_DIR},
        {"name": "EMBEDQ_MODEL_CACHE_DIR", "value": MODELS_DIR},
        {"name": "EMBEDQ_LOG_FORMAT", "value": "json"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
    ]


def volumes() -> list[dict[str, Any]]:
    """The routes and models (a ConfigMap) and a scratch model cache per pod."""
    return [{"name": "config", "configMap": {"name": CONFIG_MAP}},
            {"name": "models", "emptyDir": {}}]


def volume_mounts() -> list[dict[str, Any]]:
    """Where `volumes` appear in an embedq container."""
    return [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "models", "mountPath": MODELS_DIR}]


def service(name: str, options: Options, component: str, port: int,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A ClusterIP Service in front of one role's pods."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(name, options, labels(component), annotations),
            "spec": {"selector": labels(component),
                     "ports": [{"name": "main", "port": port, "targetPort": port}]}}


def http_probe(path: str, port: int, period_s: int = 10) -> dict[str, Any]:
    """An HTTP GET probe."""
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s,
            "timeoutSeconds": 5, "failureThreshold": 3}
