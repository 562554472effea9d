"""``embedq models`` (list every registered model) and ``embedq models add`` (register one)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from embedq.cli.options import context, json_option
from embedq.config.logs import configure_logging
from embedq.config.registry import Precision
from embedq.config.settings import load_settings


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def models(click_context: click.Context, as_json: bool) -> None:
    """List every registered model: where it comes from and whether it is available here."""
    if click_context.invoked_subcommand is not None:
        return
    from embedq.worker.models.sources import availability, origin

    settings, registry = context()
    rows = [
        {"model": spec.name, "dim": spec.dim, "max_tokens": spec.max_tokens,
         "precisions": ",".join(p.value for p in spec.precisions), "source": spec.source.kind,
         "origin": origin(spec), "status": availability(spec, settings.model_cache_dir),
         "prompts": spec.prompts}
        for spec in registry.models.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['model']}  {row['dim']}-d  max {row['max_tokens']} tokens  "
                   f"precisions {row['precisions']}\n"
                   f"    from: {row['origin']}\n    {row['status']}")


@models.command(name="add")
@click.argument("name")
@click.argument("source")
@click.option("--route", default=None, help="Also add a route (use case) of this name.")
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default="auto",
              show_default=True, help="The route's precision.")
@click.option("--revision", default=None,
              help="Revision for cache keys (folder default: a hash of the weights) or of the "
              "hub id (default: main).")
@click.option("--config-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Config folder to write (default: EMBEDQ_CONFIG_DIR).")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Measure the int8 recipe on this CPU (offered only if it holds the bars).")
@click.option("--replace", is_flag=True, help="Replace a model or route of the same name.")
def add(name: str, source: str, route: str | None, precision: str, revision: str | None,
        config_dir: Path | None, measure: bool, replace: bool) -> None:
    """Register the sentence-transformers model at SOURCE (a folder, or a hub id where a hub
    is reachable) as NAME: dimension, token limit, pooling and prompts come from its files."""
    from embedq.ops.model_registration import add_model

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    added = add_model(settings, name, source, config_dir=config_dir, route=route,
                      precision=precision, revision=revision, measure=measure, replace=replace)
    entry = added.entry
    prompts = ", ".join(f"{k}={v!r}" for k, v in entry["prompts"].items()) or "none"
    click.echo(f"added model {name} to {added.config_dir}: {entry['dim']}-d, max "
               f"{entry['max_tokens']} tokens, pooling {entry['pooling']}, prompts {prompts}; "
               f"int8 {added.int8}")
    if added.route:
        click.echo(f"added route {added.route}: embedq worker --model {name} --precision "
                   f"{precision} (with EMBEDQ_CONFIG_DIR={added.config_dir})")
