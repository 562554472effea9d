"""``embedq k8s render``: Kubernetes manifests for the configured routes (see `embedq.ops.k8s`)."""

from __future__ import annotations

from pathlib import Path

import click

from embedq.cli.options import context
from embedq.ops.k8s.objects import Options

_DEFAULTS = Options()


@click.group()
def k8s() -> None:
    """Kubernetes: manifests generated from routes.json."""


@k8s.command()
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder to write the YAML files into (created if missing).")
@click.option("--namespace", default=_DEFAULTS.namespace, show_default=True)
@click.option("--image", default=_DEFAULTS.image, show_default=True,
              help="The embedq image (the repository's Dockerfile builds it).")
@click.option("--prometheus-url", default=_DEFAULTS.prometheus_url, show_default=True,
              help="The Prometheus KEDA queries for the queue gauges.")
@click.option("--max-replicas", type=click.IntRange(1), default=_DEFAULTS.max_replicas,
              show_default=True, help="Most worker pods per queue (one core each).")
@click.option("--target-drain-s", type=click.IntRange(1), default=_DEFAULTS.target_drain_s,
              show_default=True, help="Grow a pool whose backlog would take longer to drain.")
@click.option("--idle-to-zero-s", type=click.IntRange(0), default=_DEFAULTS.idle_to_zero_s,
              show_default=True, help="Idle seconds before a queue's last pod goes.")
def render(out: Path, namespace: str, image: str, prometheus_url: str, max_replicas: int,
           target_drain_s: int, idle_to_zero_s: int) -> None:
    """Write a worker Deployment and KEDA ScaledObject per queue, the gateway, the dashboard,
    Flower and the two Redis into OUT, with a README.txt of the steps."""
    from embedq.ops.k8s.render import write  # PyYAML comes with the worker extra

    settings, registry = context()
    options = Options(namespace=namespace, image=image, prometheus_url=prometheus_url,
                      max_replicas=max_replicas, target_drain_s=target_drain_s,
                      idle_to_zero_s=idle_to_zero_s)
    for path in write(registry, settings.config_dir, options, out):
        click.echo(str(path))
