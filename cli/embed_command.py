"""``embedq embed``: a few texts from the command line, or a whole file as a resumable job.

With ``--input`` the command is a thin layer over `embedq.producer.corpus.embed_file`: the same
job an Airflow or Dagster task runs. SIGTERM (how schedulers stop a task) is handled like Ctrl-C:
rows already resolved are committed, and the same command resumes.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import click
import numpy as np

from embedq.config.logs import configure_logging
from embedq.config.settings import load_settings


@click.command()
@click.argument("texts", nargs=-1)
@click.option("--use-case", "-u", default=None, help="Route to use (default: the default route).")
@click.option("--input", "input_file", type=click.Path(path_type=Path), default=None,
              help="File to embed: .txt (a text a line), .jsonl[.gz], .csv[.gz] or .parquet.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where the vectors go: .parquet (with ids) or .npy (ids beside it).")
@click.option("--text-field", default=None, help="Field or column with the text (default: text).")
@click.option("--id-field", default=None, help="Field or column with the id (default: row number).")
@click.option("--format", "input_format", type=click.Choice(["txt", "jsonl", "csv", "parquet"]),
              default=None, help="Input format, when the file name does not tell.")
@click.option("--errors", "errors_file", type=click.Path(path_type=Path), default=None,
              help="Failed rows as JSON lines (default: OUTPUT.errors.jsonl).")
@click.option("--restart", is_flag=True, help="Forget this job's checkpoint and start over.")
@click.option("--overwrite", is_flag=True, help="Replace an output that has no checkpoint.")
@click.option("--chunk-size", type=int, default=None, help="Texts per task.")
@click.option("--window", type=int, default=None,
              help="Most rows sent but not yet durable (what a crash can cost).")
@click.option("--timeout", type=float, default=None, help="Seconds to wait per chunk.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on a terminal; log lines otherwise).")
@click.option("--json", "as_json", is_flag=True, help="Print the job's summary as JSON.")
def embed(texts: tuple[str, ...], use_case: str | None, input_file: Path | None,
          output: Path | None, text_field: str | None, id_field: str | None,
          input_format: str | None, errors_file: Path | None, restart: bool, overwrite: bool,
          chunk_size: int | None, window: int | None, timeout: float | None,
          progress: bool | None, as_json: bool) -> None:
    """Embed TEXTS, or every row of --input into --output (resumable: re-run after a crash)."""
    if input_file is None:
        _embed_texts(texts, use_case, output, chunk_size, timeout)
        return
    if texts or output is None:
        raise click.UsageError("--input needs --output, and no TEXTS beside it")
    from embedq.producer.corpus import ProgressDisplay, embed_file

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    signal.signal(signal.SIGTERM, _interrupt)
    display = ProgressDisplay(progress)
    try:
        summary = embed_file(input_file, output, use_case, text_field=text_field,
                             id_field=id_field, input_format=input_format,
                             errors_file=errors_file, restart=restart, overwrite=overwrite,
                             chunk_size=chunk_size, window=window, timeout=timeout,
                             on_progress=display)
    except KeyboardInterrupt:
        display.close()
        click.echo(f"embedq: interrupted; the rows done so far are kept. Run the same command "
                   f"to resume {output}", err=True)
        sys.exit(130)
    display.close()
    if as_json:
        click.echo(json.dumps(asdict(summary), indent=2))
    done = "already complete: " if summary.already_complete else ""
    failed = f", {summary.failed:,} failed (see {summary.errors_file})" if summary.failed else ""
    resumed = ""
    if summary.resumed_from and not summary.already_complete:
        # no row this run: the kill came after the last part, only the merge was left to do
        resumed = (f", resumed at row {summary.resumed_from + 1:,}" if summary.rows_this_run
                   else ", every row was durable already: merged")
    click.echo(f"{done}{summary.embedded:,} of {summary.rows:,} rows embedded{failed}, "
               f"{summary.cached:,} from the cache{resumed}; {summary.texts_per_s:,.1f} rows/s; "
               f"{summary.model} {summary.revision} -> {summary.output}", err=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _embed_texts(texts: tuple[str, ...], use_case: str | None, output: Path | None,
                 chunk_size: int | None, timeout: float | None) -> None:
    """A few texts from the command line: JSON on stdout, or one .npy."""
    from embedq.producer.client import EmbeddingClient

    if not texts:
        raise click.UsageError("give texts as arguments or --input FILE --output FILE")
    client = EmbeddingClient()
    vectors = np.concatenate(list(client.embed_many(list(texts), use_case,
                                                    chunk_size=chunk_size, timeout=timeout)))
    if output is not None:
        np.save(output, vectors)
        click.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} {vectors.dtype} to {output}",
                   err=True)
    else:
        click.echo(json.dumps({"shape": list(vectors.shape), "vectors": vectors.tolist()}))
