"""``embedq bench``: the raw model against the same texts through a private queue."""

from __future__ import annotations

from pathlib import Path

import click

from embedq.ops.bench_scenarios import NAMES as SCENARIO_NAMES


@click.command()
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
@click.option("--tls/--no-tls", default=False, help="Run the private Redis TLS-only (a private "
              "CA, verified): what TLS costs, next to a run without.")
def bench(model: str, precision: str, kinds: tuple[str, ...], input_path: Path | None,
          count: int, chosen: tuple[str, ...], threads: int, processes: int,
          concurrency: int | None, pool: str, mixed: bool, json_out: Path | None,
          tls: bool) -> None:
    """The raw model and the same texts through a private queue, scenario by scenario."""
    from embedq.ops.bench import mixed_lengths, run_bench

    run_bench(model=model, precision=precision, kinds=["input"] if input_path else list(kinds),
              count=count,
              input_path=input_path, chosen=list(chosen), threads=threads, processes=processes,
              concurrency=concurrency, pool=pool, json_out=json_out, tls=tls)
    if mixed:
        mixed_lengths()
