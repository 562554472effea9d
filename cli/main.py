"""The ``embedq`` command: producer commands run light; worker commands import the worker lazily.

A producer-only install (no torch) can run ``embedq routes`` and ``embedq embed``; ``embedq
worker`` and ``embedq up`` need the ``worker`` extra and say so when it is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from embedq.cli.cache_commands import cache
from embedq.cli.dashboard_command import dashboard
from embedq.cli.dead_letters_command import dead_letters
from embedq.cli.embed_command import embed
from embedq.cli.eval_commands import EVAL_COMMANDS
from embedq.cli.gateway_command import gateway
from embedq.cli.models_command import models
from embedq.cli.options import json_option
from embedq.cli.worker_command import worker
from embedq.config.errors import EmbedqError
from embedq.config.logs import configure_logging
from embedq.config.prompts import route_default
from embedq.config.registry import Registry, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.ops.bench_scenarios import NAMES as SCENARIO_NAMES
from embedq.tasks.names import route_queue


def _context() -> tuple[Settings, Registry]:
    settings = load_settings()
    return settings, load_registry(settings.config_dir)


@click.group()
def main() -> None:
    """embedq: text embeddings on Redis-backed Celery queues, routed by use case."""


@main.command()
@json_option
def routes(as_json: bool) -> None:
    """Print the routing table: use case -> model, precision, dim, queue."""
    _, registry = _context()
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


@main.command()
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
def up(flower: bool, flower_address: str, flower_port: int, concurrency: int | None,
       dashboard_port: int, gateway: bool, gateway_port: int, use_cases: tuple[str, ...]) -> None:
    """Run the embedded default: a private Redis and one worker per configured queue.

    Everything runs in the foreground and stops on Ctrl-C or SIGTERM. Other shells reach it by
    setting EMBEDQ_REDIS_URL to the URL printed at start.
    """
    from embedq.ops.stack import run_stack

    run_stack(flower=flower, flower_address=flower_address, flower_port=flower_port,
              concurrency=concurrency, dashboard_port=dashboard_port or None,
              gateway_port=gateway_port if gateway else None, use_cases=use_cases)


@main.command()
@click.option("--model", "-m", default="minilm", show_default=True,
              help="Model name from models.json.")
@click.option("--precision", "-p", default="fp32", show_default=True,
              help="The worker's precision (auto included); raw is always PyTorch fp32.")
@click.option("--texts", "kinds", type=click.Choice(["short", "long"]), multiple=True,
              default=("short", "long"), show_default=True,
              help="Generated text sets: short (search queries, ~10 tokens), long (~40 tokens).")
@click.option("--input", "input_path", type=click.Path(path_type=Path, exists=True,
              dir_okay=False), default=None,
              help="Your own texts instead, one a line (UTF-8); measured as one set.")
@click.option("--count", type=int, default=2000, show_default=True,
              help="Texts per scenario (sequential sends at most 500).")
@click.option("--scenario", "chosen", type=click.Choice(list(SCENARIO_NAMES)), multiple=True,
              default=SCENARIO_NAMES, show_default=True, help="Scenarios to run.")
@click.option("--threads", type=int, default=16, show_default=True,
              help="Request threads (split among --processes in the processes scenario).")
@click.option("--processes", type=int, default=4, show_default=True,
              help="Producer processes in the processes scenario.")
@click.option("--concurrency", "-c", type=int, default=None,
              help="Worker pool processes (default: the worker's own, one per core).")
@click.option("--pool", "-P", type=click.Choice(["prefork", "solo", "threads"]),
              default="prefork", show_default=True, help="Worker pool to measure.")
@click.option("--mixed/--no-mixed", default=False, help="Also compare batching policies on "
              "short queries mixed with long passages (in-process).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the figures as JSON.")
def bench(model: str, precision: str, kinds: tuple[str, ...], input_path: Path | None,
          count: int, chosen: tuple[str, ...], threads: int, processes: int,
          concurrency: int | None, pool: str, mixed: bool, json_out: Path | None) -> None:
    """The raw model and the same texts through a private queue, scenario by scenario."""
    from embedq.ops.bench import mixed_lengths, run_bench

    run_bench(model=model, precision=precision, kinds=["input"] if input_path else list(kinds),
              count=count,
              input_path=input_path, chosen=list(chosen), threads=threads, processes=processes,
              concurrency=concurrency, pool=pool, json_out=json_out)
    if mixed:
        mixed_lengths()


@main.group(name="eval")
def eval_group() -> None:
    """Measure models (needs the worker extra)."""


@eval_group.command(name="precision")
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

    settings, registry = _context()
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


main.add_command(cache)
main.add_command(dead_letters)
main.add_command(embed)
main.add_command(worker)
main.add_command(dashboard)
for _command in EVAL_COMMANDS:
    eval_group.add_command(_command)
main.add_command(gateway)
main.add_command(models)


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
