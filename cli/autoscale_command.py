"""``embedq autoscale``: run a host's workers as pools sized to their load (no Redis, no UI).

For a host that runs only workers against a shared broker (EMBEDQ_REDIS_URL); ``embedq up
--autoscale`` runs the same thing beside its private Redis. The decisions are in
`embedq.ops.autoscale.policy`.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

import click

from embedq.cli.options import context
from embedq.config.logs import configure_logging
from embedq.ops.autoscale.policy import Policy

_DEFAULT = Policy(cores=1)


@click.command()
@click.option("--cores", type=click.IntRange(1), default=None,
              help="Most worker processes computing at once (default: the cores this process "
                   "is given: affinity, capped by a cgroup quota).")
@click.option("--use-case", "-u", "use_cases", multiple=True,
              help="Only these use cases' queues (default: every route's).")
@click.option("--keep-warm", "-k", multiple=True,
              help="Use cases whose queues never scale to zero (a fallback chain's always do).")
@click.option("--target-drain-s", type=click.FloatRange(0.5), default=_DEFAULT.target_drain_s,
              show_default=True, help="Grow a pool whose backlog would take longer to drain.")
@click.option("--shrink-after-s", type=click.FloatRange(0), default=_DEFAULT.shrink_after_s,
              show_default=True, help="Idle seconds before an idle pool keeps one process.")
@click.option("--idle-to-zero-s", type=click.FloatRange(0), default=_DEFAULT.idle_to_zero_s,
              show_default=True, help="Idle seconds before a pool's last process stops.")
@click.option("--initial", type=click.IntRange(0), default=0, show_default=True,
              help="Processes per queue at start (then the load decides).")
@click.option("--metrics-port", type=int, default=None,
              help="Serve the pool-size gauges on 127.0.0.1:PORT/metrics.")
def autoscale(cores: int | None, use_cases: tuple[str, ...], keep_warm: tuple[str, ...],
              target_drain_s: float, shrink_after_s: float, idle_to_zero_s: float,
              initial: int, metrics_port: int | None) -> None:
    """Keep every route's worker pool sized to its backlog within a core budget; scale idle
    routes to zero and bring them back on the first request. Ctrl-C stops the workers."""
    # Imported here: prometheus_client must not be imported by `embedq` before a worker sets
    # up its multiprocess mode (`embedq.worker.metrics.prepare`).
    from embedq.ops.autoscale.runner import Autoscaler
    from embedq.ops.k8s.render import chained_queues
    from embedq.ops.stack import queues_of
    from embedq.worker.models.cpu import cores_given

    settings, registry = context()
    configure_logging(settings.log_level, settings.log_format)
    queues = queues_of(registry, use_cases)
    keep = chained_queues(registry) | set(queues_of(registry, keep_warm) if keep_warm else [])
    policy = Policy(cores=cores or cores_given(), target_drain_s=target_drain_s,
                    shrink_after_s=shrink_after_s, idle_to_zero_s=idle_to_zero_s)
    scaler = Autoscaler(settings, queues, policy, dict(os.environ), keep=sorted(keep),
                        initial=initial)
    if metrics_port is not None:
        scaler.serve_metrics(metrics_port)
    stopping: list[int] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scaler.run(lambda: bool(stopping))
