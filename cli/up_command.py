"""``embedq up``: the embedded default stack in the foreground (`embedq.ops.stack`)."""

from __future__ import annotations

import click


@click.command()
@click.option("--flower/--no-flower", default=True, show_default=True,
              help="Also start Flower on 127.0.0.1:5555.")
@click.option("--flower-address", default="127.0.0.1", show_default=True,
              help="Anything but loopback needs EMBEDQ_FLOWER_USER and EMBEDQ_FLOWER_PASSWORD.")
@click.option("--flower-port", type=int, default=5555, show_default=True)
@click.option("--concurrency", "-c", type=int, default=None, help="Pool processes per worker.")
@click.option("--dashboard-port", type=int, default=8050, show_default=True,
              help="Port of `embedq dashboard` on 127.0.0.1 (0: do not start it).")
@click.option("--gateway/--no-gateway", default=True, show_default=True,
              help="Also start the HTTP gateway on 127.0.0.1 (needs the gateway extra).")
@click.option("--gateway-port", type=int, default=8080, show_default=True)
@click.option("--use-case", "-u", "use_cases", multiple=True,
              help="Start only the workers these use cases need (default: every route's).")
@click.option("--autoscale", is_flag=True,
              help="Size each queue's pool to its backlog within --cores; idle ones go to zero "
                   "and come back on the first request (see `embedq autoscale --help`).")
@click.option("--cores", type=click.IntRange(1), default=None,
              help="With --autoscale: most worker processes computing at once (default: the "
                   "cores given).")
def up(flower: bool, flower_address: str, flower_port: int, concurrency: int | None,
       dashboard_port: int, gateway: bool, gateway_port: int, use_cases: tuple[str, ...],
       autoscale: bool, cores: int | None) -> None:
    """Run the embedded default: a private Redis and one worker per configured queue.

    Everything runs in the foreground and stops on Ctrl-C or SIGTERM. Other shells reach it by
    setting EMBEDQ_REDIS_URL to the URL printed at start.
    """
    from embedq.ops.stack import run_stack

    if autoscale and concurrency:
        raise click.UsageError("--concurrency does not apply with --autoscale: its pools are "
                               "one-process workers, sized by the load within --cores")
    if cores and not autoscale:
        raise click.UsageError("--cores is the autoscaler's budget: add --autoscale, or size "
                               "fixed workers with --concurrency")
    run_stack(flower=flower, flower_address=flower_address, flower_port=flower_port,
              concurrency=concurrency, dashboard_port=dashboard_port or None,
              gateway_port=gateway_port if gateway else None, use_cases=use_cases,
              autoscale=autoscale, cores=cores)
