"""``embedq probe``: exit 0 when this host's worker for a queue has its model loaded and serves.

Made for Kubernetes exec probes (startup, readiness, liveness) and compose health checks; see
`embedq.ops.probe` for why the liveness set, not a port or a ping, is the signal.
"""

from __future__ import annotations

import click
import redis

from embedq.config.errors import EmbedqError
from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.ops.probe import serving_here
from embedq.tasks.brokers import settings_for_queues
from embedq.tasks.connections import redis_client, safe_url


@click.command()
@click.option("--queue", "-Q", required=True, help="The worker's queue, e.g. embed.minilm.fp32.")
@click.option("--broker-down-ok", is_flag=True,
              help="Succeed when the broker cannot be reached (for liveness: restarting the "
                   "worker would not bring Redis back).")
def probe(queue: str, broker_down_ok: bool) -> None:
    """Exit 0 if a worker on this host serves QUEUE with its model loaded, else 1."""
    try:  # the queue's broker: a route may name its own
        base = load_settings()
        settings = settings_for_queues(load_registry(base.config_dir), base, [queue])
    except EmbedqError as exc:
        raise click.ClickException(str(exc)) from exc
    client = redis_client(settings.broker, master_name=settings.sentinel_master,
                          socket_timeout=3.0, socket_connect_timeout=3.0)
    try:
        ok = serving_here(client, queue)
    except (redis.RedisError, OSError) as exc:
        if broker_down_ok:
            click.echo(f"broker {safe_url(settings.broker)} unreachable ({exc}); "
                       "not the worker's fault", err=True)
            return
        raise click.ClickException(
            f"broker {safe_url(settings.broker)} unreachable: {exc}") from exc
    finally:
        client.close()
    if not ok:
        raise click.ClickException(
            f"no worker on this host serves {queue} yet (model loading, or the worker is stuck)")
