"""``embedq gateway``: the OpenAI-compatible HTTP gateway (needs the ``gateway`` extra)."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs EMBEDQ_GATEWAY_API_KEYS "
                   "or EMBEDQ_GATEWAY_API_KEYS_FILE.")
@click.option("--port", type=int, default=8080, show_default=True)
def gateway(host: str, port: int) -> None:
    """Serve POST /v1/embeddings (the OpenAI shape; model = a use case), /v1/models, /health
    and /metrics, as a producer over HTTP."""
    try:
        from embedq.gateway.server import serve
    except ImportError as exc:
        raise click.ClickException(
            f"the gateway needs its extra: pip install 'embedq[gateway]' ({exc})") from exc
    serve(host, port)
