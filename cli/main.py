"""The ``embedq`` command: producer commands run light; worker commands import the worker lazily.

A producer-only install (no torch) can run ``embedq routes`` and ``embedq embed``; ``embedq
worker`` and ``embedq up`` need the ``worker`` extra and say so when it is missing.
"""

from __future__ import annotations

import sys

import click

from embedq.cli.acl_command import acl
from embedq.cli.autoscale_command import autoscale
from embedq.cli.bench_command import bench
from embedq.cli.cache_commands import cache
from embedq.cli.dashboard_command import dashboard
from embedq.cli.dead_letters_command import dead_letters
from embedq.cli.embed_command import embed
from embedq.cli.eval_commands import EVAL_COMMANDS
from embedq.cli.eval_precision_command import eval_precision
from embedq.cli.gateway_command import gateway
from embedq.cli.k8s_command import k8s
from embedq.cli.models_command import models
from embedq.cli.probe_command import probe
from embedq.cli.routes_command import routes
from embedq.cli.up_command import up
from embedq.cli.worker_command import worker
from embedq.config.errors import EmbedqError


@click.group()
def main() -> None:
    """embedq: text embeddings on Redis-backed Celery queues, routed by use case."""


@main.group(name="eval")
def eval_group() -> None:
    """Measure models (needs the worker extra)."""


for _command in (acl, autoscale, bench, cache, dashboard, dead_letters, embed, gateway, k8s,
                 models, probe, routes, up, worker):
    main.add_command(_command)
for _command in (eval_precision, *EVAL_COMMANDS):
    eval_group.add_command(_command)


def run() -> None:
    """Console entry point: embedq's own errors print as one line, not a traceback."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EmbedqError as exc:
        click.echo(f"embedq: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
