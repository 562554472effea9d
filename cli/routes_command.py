"""``embedq routes``: the routing table, from the config alone (no broker, no worker)."""

from __future__ import annotations

import json

import click

from embedq.cli.options import context, json_option
from embedq.config.prompts import route_default
from embedq.tasks.names import route_queue


@click.command()
@json_option
def routes(as_json: bool) -> None:
    """Print the routing table: use case -> model, precision, dim, queue."""
    _, registry = context()
    rows = [
        {
            "use_case": r.name,
            "model": r.model,
            "precision": r.precision.value,
            "dim": registry.output_dim(r),
            "normalize": r.normalize,
            "dtype": r.output_dtype.value,
            "queue": route_queue(r),
            "default": r.name == registry.default_route,
            "prompt": route_default(r, registry.model(r.model)).text,
            "prompt_names": list(r.prompt_names),
        }
        for r in registry.routes.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ["use_case", "model", "precision", "dim", "normalize", "dtype", "queue", "prompt"]
    table = [header] + [
        [(repr(row[h]) if h == "prompt" and row[h] else str(row[h]))
         + ("*" if h == "use_case" and row["default"] else "") for h in header]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    click.echo("(* default use case)")
