"""``embedq models``: every registered model, where it comes from and whether it is here."""

from __future__ import annotations

import json

import click

from embedq.cli.options import context, json_option


@click.command()
@json_option
def models(as_json: bool) -> None:
    """List every registered model: where it comes from and whether it is available here."""
    from embedq.worker.models.sources import availability, origin

    settings, registry = context()
    rows = [
        {"model": spec.name, "dim": spec.dim, "max_tokens": spec.max_tokens,
         "precisions": ",".join(p.value for p in spec.precisions), "source": spec.source.kind,
         "origin": origin(spec), "status": availability(spec, settings.model_cache_dir)}
        for spec in registry.models.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['model']}  {row['dim']}-d  max {row['max_tokens']} tokens  "
                   f"precisions {row['precisions']}\n"
                   f"    from: {row['origin']}\n    {row['status']}")
