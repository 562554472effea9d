"""``embedq eval precision``: every precision a model runs at here, measured beside fp32.

Unlike the other ``embedq eval`` commands it loads the model in this process (no queue): what
it compares is the precisions themselves (`embedq.ops.precision_eval`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from embedq.cli.options import context
from embedq.config.logs import configure_logging


@click.command(name="precision")
@click.option("--model", "-m", required=True, help="Model name from models.json.")
@click.option("--texts", type=int, default=512, show_default=True,
              help="Sentences timed at batch 32.")
@click.option("--pairs", type=int, default=None, help="STS pairs to score (default: all).")
@click.option("--threads", type=int, default=2, show_default=True,
              help="Compute threads (torch and ONNX Runtime).")
@click.option("--data", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="STS pairs as CSV with sentence1,sentence2,score (default: "
              "the bundled STS-B sample).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the figures as JSON to this file.")
def eval_precision(model: str, texts: int, pairs: int | None, threads: int, data: Path | None,
                   json_out: Path | None) -> None:
    """For each precision MODEL runs at here: RSS, weight bytes, texts/s, cosine, Spearman."""
    from dataclasses import asdict

    from embedq.ops.precision_eval import bundled_sts, evaluate, table

    settings, registry = context()
    configure_logging(settings.log_level, settings.log_format)  # logs to stderr, not the table
    rows, skipped = evaluate(registry, model, settings, stsb=data or bundled_sts(),
                             texts=texts, pairs=pairs, threads=threads)
    click.echo(table(rows))
    for precision, reason in skipped.items():
        click.echo(f"{precision}: not measured here: {reason}")
    document = json.dumps({"rows": [asdict(r) for r in rows], "skipped": skipped}, indent=2)
    click.echo(document)
    if json_out is not None:
        json_out.write_text(document)
