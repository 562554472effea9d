"""Serving the gateway app with uvicorn, in this process.

uvicorn picks uvloop when the ``gateway`` extra installed it, and parses with httptools through
`CoalescingHttpToolsProtocol` (one write per response). Its access log is
off: the app logs each refusal once, in embedq's own format, with the request id. To use more
cores, run more gateway processes (on other ports, hosts or containers) behind a load balancer;
they share nothing but Redis.
"""

from __future__ import annotations

import gc

import uvicorn

from embedq.config.logs import configure_logging
from embedq.config.settings import Settings, load_settings
from embedq.gateway.app import create_app
from embedq.gateway.http_protocol import CoalescingHttpToolsProtocol
from embedq.tasks.tls import check_settings_tls


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """Run the gateway on ``host:port`` until SIGINT or SIGTERM (requests in flight finish)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    check_settings_tls(settings)  # a wrong CA or host name: one clear error, at start
    app = create_app(settings, host=host)
    # What start-up built (modules, the app, the registry) lives as long as the process: out of
    # the collector's sight, a full collection walks only what requests allocate. With it in
    # sight, each full pass over ~100k objects stalled every request in flight 50-200 ms.
    gc.freeze()
    uvicorn.run(app, host=host, port=port, http=CoalescingHttpToolsProtocol, log_config=None,
                access_log=False, server_header=False,
                timeout_graceful_shutdown=int(settings.gateway_timeout_s))
