"""``embedq dashboard``: the live page, its JSON and the queue gauges for Prometheus."""

from __future__ import annotations

import click

from embedq.config.logs import configure_logging
from embedq.config.settings import load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (off loopback it needs EMBEDQ_DASHBOARD_USER/PASSWORD).")
@click.option("--port", type=int, default=8050, show_default=True)
def dashboard(host: str, port: int) -> None:
    """Serve the dashboard until Ctrl-C: / (page), /api/figures (JSON), /metrics (Prometheus)."""
    from embedq.ops.dashboard.app import serve_forever

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    serve_forever(settings, host, port, announce=click.echo)
