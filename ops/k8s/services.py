"""Everything beside the workers: the two Redis, the gateway, the dashboard, Flower, the config.

Persistence: the broker Redis holds queued jobs, so it is a StatefulSet with a volume, an
append-only file synced every second and ``noeviction`` (the same choice as docker-compose).
The cache Redis holds only vectors that can be computed again: no disk, ``allkeys-lfu`` under a
``maxmemory``. The dashboard's Service carries the usual ``prometheus.io`` annotations; its
``/metrics`` (behind basic auth) has the queue gauges KEDA's triggers query.
"""

from __future__ import annotations

import json
from typing import Any

from embedq.ops.k8s.objects import (
    BROKER,
    CACHE,
    CONFIG_MAP,
    Options,
    http_probe,
    labels,
    metadata,
    secret_env,
    service,
    shared_env,
    volume_mounts,
    volumes,
)

_REDIS_IMAGE = "redis:7.4"


def _redis_ping(answers: str) -> dict[str, Any]:
    """redis-cli ping with the password from the environment, never in the probe's text."""
    return {"exec": {"command": ["sh", "-c", 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning '
                                 f"ping | grep -qE '{answers}'"]},
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}


def config_map(models: dict[str, Any], routes: dict[str, Any], options: Options) -> dict[str, Any]:
    """models.json and routes.json, mounted at EMBEDQ_CONFIG_DIR in every embedq pod."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(CONFIG_MAP, options, labels("config")),
            "data": {"models.json": json.dumps(models, indent=2),
                     "routes.json": json.dumps(routes, indent=2)}}


def _redis_container(args: list[str], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "redis", "image": _REDIS_IMAGE,
            "args": ["--requirepass", "$(REDIS_PASSWORD)", *args],
            "env": [secret_env("REDIS_PASSWORD", "embedq-redis", "password")],
            "ports": [{"name": "redis", "containerPort": 6379}],
            # Alive while it loads a large append-only file (LOADING), ready once it answers.
            "readinessProbe": _redis_ping("PONG"), "livenessProbe": _redis_ping("PONG|LOADING"),
            "volumeMounts": mounts}


def broker(options: Options, name: str = BROKER, component: str = "broker"
           ) -> list[dict[str, Any]]:
    """A broker Redis: AOF every second, never evicts, on a persistent volume."""
    container = _redis_container(["--appendonly", "yes", "--appendfsync", "everysec",
                                  "--maxmemory-policy", "noeviction", "--dir", "/data"],
                                 [{"name": "data", "mountPath": "/data"}])
    container["resources"] = {"requests": {"cpu": "500m", "memory": "512Mi"}}
    selector = labels(component)
    return [{
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": metadata(name, options, selector),
        "spec": {"serviceName": name, "replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": selector},
                              "spec": {"containers": [container]}},
                 "volumeClaimTemplates": [{
                     "metadata": {"name": "data"},
                     "spec": {"accessModes": ["ReadWriteOnce"],
                              "resources": {"requests": {"storage": options.broker_storage}}}}]},
    }, service(name, options, component, 6379)]


def cache(options: Options, name: str = CACHE, component: str = "cache"
          ) -> list[dict[str, Any]]:
    """A cache Redis: nothing on disk, least-frequently-used eviction under maxmemory."""
    container = _redis_container(["--save", "", "--appendonly", "no", "--maxmemory",
                                  options.cache_maxmemory, "--maxmemory-policy", "allkeys-lfu"],
                                 [])
    return [_deployment(name, options, component, container, with_config=False),
            service(name, options, component, 6379)]


def _deployment(name: str, options: Options, component: str, container: dict[str, Any], *,
                with_config: bool = True, replicas: int = 1) -> dict[str, Any]:
    selector = labels(component)
    spec: dict[str, Any] = {"containers": [container]}
    if with_config:
        container["volumeMounts"] = volume_mounts()
        spec["volumes"] = volumes()
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(name, options, selector),
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}, "spec": spec}}}


def _embedq(name: str, command: list[str], port: int, options: Options,
            env: list[dict[str, Any]], health: str) -> dict[str, Any]:
    return {"name": name, "image": options.image, "command": command,
            "env": [*shared_env(options), *env],
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": http_probe(health, port),
            "livenessProbe": http_probe(health, port, 30)}


def gateway(options: Options) -> list[dict[str, Any]]:
    """The OpenAI-compatible HTTP gateway, bearer keys from a Secret; add replicas freely."""
    container = _embedq("gateway", ["embedq", "gateway", "--host", "0.0.0.0", "--port", "8080"],
                        8080, options,
                        [secret_env("EMBEDQ_GATEWAY_API_KEYS", "embedq-gateway", "api-keys")],
                        "/health")
    container["resources"] = {"requests": {"cpu": "500m", "memory": "256Mi"}}
    return [_deployment("embedq-gateway", options, "gateway", container, replicas=2),
            service("embedq-gateway", options, "gateway", 8080)]


def dashboard(options: Options) -> list[dict[str, Any]]:
    """`embedq dashboard`: the page and the queue gauges KEDA's triggers read via Prometheus."""
    container = _embedq("dashboard", ["embedq", "dashboard", "--host", "0.0.0.0", "--port",
                                      "8050"], 8050, options,
                        [secret_env("EMBEDQ_DASHBOARD_USER", "embedq-dashboard", "user"),
                         secret_env("EMBEDQ_DASHBOARD_PASSWORD", "embedq-dashboard",
                                    "password")], "/healthz")
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": "8050",
              "prometheus.io/path": "/metrics"}
    return [_deployment("embedq-dashboard", options, "dashboard", container),
            service("embedq-dashboard", options, "dashboard", 8050, scrape)]


def flower(options: Options) -> list[dict[str, Any]]:
    """Flower with embedq's Broker page; it can revoke tasks, so basic auth is required."""
    container = _embedq("flower", ["celery", "-A", "embedq.ops.flower_app", "flower",
                                   "--port=5555"], 5555, options,
                        [secret_env("FLOWER_BASIC_AUTH", "embedq-flower", "basic-auth")],
                        "/healthcheck")
    return [_deployment("embedq-flower", options, "flower", container),
            service("embedq-flower", options, "flower", 5555)]
