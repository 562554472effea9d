"""``embedq eval sts|retrieval|clustering``: judge routes through the running workers.

Each command reads the user's file (or the small sample shipped in the package), refuses a
route without a live worker at once, embeds through the queue and prints one table, or one JSON
object with ``--json``. ``--compare R1,R2`` runs the same task on several routes (fp32 against
int8 of one model, say) and prints them side by side with texts/s and worker memory. Every
result is saved, and ``embedq dashboard`` shows the latest per task and route.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from embedq.config.logs import configure_logging
from embedq.config.settings import load_settings

if TYPE_CHECKING:  # the evaluators import numpy and scikit-learn: only when a command runs
    from embedq.ops.evaluation.evaluators import Evaluator

_PATH = click.Path(path_type=Path)


def _routes(use_case: str | None, compare: str | None) -> list[str | None]:
    """The routes to run: ``--compare``'s list, else the one use case (None: the default)."""
    if compare:
        return [name.strip() for name in compare.split(",") if name.strip()]
    return [use_case]


def _run(build: Callable[[], tuple[Evaluator, str]], use_case: str | None, compare: str | None,
         as_json: bool) -> None:
    from embedq.ops.evaluation.report import json_document, table
    from embedq.ops.evaluation.session import run_routes

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    evaluator, data = build()
    results = run_routes(settings, evaluator, _routes(use_case, compare), data=data)
    click.echo(json.dumps(json_document(results), indent=2) if as_json else table(results))


def _route_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--use-case``, ``--compare`` and ``--json``, shared by every task."""
    for option in reversed([
        click.option("--use-case", "-u", default=None, help="Route (default: the default)."),
        click.option("--compare", default=None, metavar="R1,R2,...",
                     help="Run the same task on several routes, side by side."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
    ]):
        command = option(command)
    return command


@click.command(name="sts")
@click.option("--data", type=_PATH, default=None,
              help="CSV with sentence1,sentence2,score (default: the bundled STS sample).")
@_route_options
def eval_sts(use_case: str | None, data: Path | None, compare: str | None, as_json: bool) -> None:
    """Spearman and Pearson of cosine similarity against gold similarity scores."""
    from embedq.ops.evaluation.samples import sts_task

    _run(lambda: sts_task(data), use_case, compare, as_json)


@click.command(name="retrieval")
@click.option("--corpus", type=_PATH, default=None, help="BEIR corpus.jsonl[.gz].")
@click.option("--queries", type=_PATH, default=None, help="BEIR queries.jsonl.")
@click.option("--qrels", type=_PATH, default=None, help="BEIR qrels TSV.")
@_route_options
def eval_retrieval(use_case: str | None, corpus: Path | None, queries: Path | None,
                   qrels: Path | None, compare: str | None, as_json: bool) -> None:
    """nDCG@10, MRR@10 and Recall@100 (default data: the bundled SQuAD sample)."""
    from embedq.ops.evaluation.samples import retrieval_task

    _run(lambda: retrieval_task(corpus, queries, qrels), use_case, compare, as_json)


@click.command(name="clustering")
@click.option("--data", type=_PATH, default=None,
              help="CSV with text,label (default: the bundled Banking77 sample).")
@_route_options
def eval_clustering(use_case: str | None, data: Path | None, compare: str | None,
                    as_json: bool) -> None:
    """V-measure of k-means against the labels."""
    from embedq.ops.evaluation.samples import clustering_task

    _run(lambda: clustering_task(data), use_case, compare, as_json)


EVAL_COMMANDS = (eval_sts, eval_retrieval, eval_clustering)
