"""`embed_file`: embed every row of a file into an output beside its ids, resumably.

Everything that can be refused is refused before the first text is sent: a missing or unreadable
input, fields that are not there, an output folder that cannot be written, an output that this
job did not make, a checkpoint of another job. Then the run goes on from the durable end of the
checkpoint, and at the end the spool becomes the output in one sequential pass. Every final
file is published atomically and the record says complete only after the last of them, so a run
killed anywhere in the merge leaves all its parts, and the next run (which then has no row left
to send) merges again; `killpoints` names the points a test kills it at.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from embedq.config.errors import CheckpointMismatchError, InvalidInputError, OutputFileError
from embedq.config.prompts import route_default
from embedq.config.registry import RouteSpec
from embedq.producer.client import EmbeddingClient
from embedq.producer.corpus import killpoints
from embedq.producer.corpus.checkpoint import (
    Checkpoint,
    Identity,
    check_same_job,
    require_folder,
)
from embedq.producer.corpus.fingerprint import changes, fingerprint
from embedq.producer.corpus.formats import (
    IdType,
    InputSpec,
    Source,
    input_spec,
    open_source,
    output_format,
)
from embedq.producer.corpus.ledger import Ledger
from embedq.producer.corpus.progress import ProgressCallback
from embedq.producer.corpus.runner import Plan, Run, plan_for
from embedq.producer.corpus.stream import live_workers
from embedq.producer.corpus.writers import write_errors, write_npy, write_parquet

_log = structlog.get_logger("embedq.corpus")


@dataclass(frozen=True, slots=True)
class CorpusSummary:
    """What a job did. ``rows`` = ``embedded`` + ``failed``; the rate is this run's."""

    input: str
    output: str
    errors_file: str | None
    rows: int
    embedded: int
    failed: int
    cached: int
    resumed_from: int
    rows_this_run: int
    seconds: float
    texts_per_s: float
    model: str
    revision: str
    window: int
    merge_seconds: float
    already_complete: bool = False


def embed_file(input: str | os.PathLike[str], output: str | os.PathLike[str],
               use_case: str | None = None, *, text_field: str | None = None,
               id_field: str | None = None, input_format: str | None = None,
               errors_file: str | os.PathLike[str] | None = None, restart: bool = False,
               overwrite: bool = False, client: EmbeddingClient | None = None,
               chunk_size: int | None = None, window: int | None = None,
               timeout: float | None = None,
               on_progress: ProgressCallback | None = None) -> CorpusSummary:
    """Embed each row of ``input`` (.txt, .jsonl[.gz], .csv[.gz], .parquet) into ``output``
    (.parquet, or .npy with ``<output>.ids.jsonl``), resuming a checkpoint of the same job.

    ``text_field``/``id_field`` name the columns (default ``text`` and the row number). Rows
    that cannot be embedded go to ``errors_file`` (default ``<output>.errors.jsonl``).
    ``restart`` forgets this job's checkpoint; ``overwrite`` also replaces an output that no
    checkpoint vouches for. ``window`` bounds the rows sent but not yet durable (default:
    the client's in-flight window for the live workers of the route).
    """
    spec = input_spec(Path(input), input_format, text_field, id_field)
    out = Path(output)
    kind = output_format(out)
    _probe_folder(out)  # before connecting to anything: an unwritable output is found now
    source = open_source(spec)
    with nullcontext(client) if client is not None else EmbeddingClient() as active:
        return _job(active, spec, out, kind, source, use_case, errors_file, restart, overwrite,
                    _plan(active, use_case, chunk_size, window, timeout), on_progress)


def _job(client: EmbeddingClient, spec: InputSpec, out: Path, kind: str, source: Source,
         use_case: str | None, errors_file: str | os.PathLike[str] | None, restart: bool,
         overwrite: bool, plan: Plan, on_progress: ProgressCallback | None) -> CorpusSummary:
    route = client.registry.route(use_case)
    identity = Identity(
        input={"path": str(spec.path.resolve()), "format": spec.format, "gzip": spec.gzipped},
        route=_route_record(client, route),
        options={"text_field": spec.text_field, "id_field": spec.id_field,
                 "id_type": source.id_type, "output": kind})
    checkpoint = Checkpoint(out)
    errors_path = Path(errors_file) if errors_file else out.with_name(out.name + ".errors.jsonl")
    if out.exists() and not checkpoint.exists() and not overwrite:
        raise OutputFileError(f"{str(out)!r} exists and has no checkpoint of embedq's beside it; "
                              "pass --overwrite to replace it, or choose another output")
    checkpoint.lock()
    try:
        _probe_folder(errors_path)
        checkpoint.drop_unfinished([out, _ids_path(out), errors_path])
        done = _prepare(checkpoint, identity, spec, restart or overwrite)
        if done is not None:
            return done
        return _run(client, source, spec, checkpoint, identity, errors_path, route, plan,
                    on_progress)
    finally:
        checkpoint.release()


def _ids_path(out: Path) -> Path:
    """The ids beside an ``.npy`` output, one JSON value a line."""
    return out.with_name(out.name + ".ids.jsonl")


def _route_record(client: EmbeddingClient, route: RouteSpec) -> dict[str, Any]:
    record = {"use_case": route.name, "model": route.model, "fallback": list(route.fallback),
              "precision": route.precision.value, "dim": client.registry.output_dim(route),
              "normalize": route.normalize, "output_dtype": route.output_dtype.value}
    prompt = route_default(route, client.registry.model(route.model))
    if prompt.text:  # only then: checkpoints from before prompts existed still resume
        record.update(prompt=prompt.text, prompt_name=prompt.name)
    return record


def _probe_folder(path: Path) -> None:
    """Refuse now, not after hours of work, if ``path`` cannot be written."""
    require_folder(path)
    probe = path.with_name(f".{path.name}.probe")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputFileError(f"cannot write {str(path)!r}: {exc.strerror}; choose a folder you "
                              "can write to") from exc


def _prepare(checkpoint: Checkpoint, identity: Identity, spec: InputSpec,
             fresh: bool) -> CorpusSummary | None:
    """Start, resume or recognise a finished job; the summary when there is nothing to do."""
    if fresh:
        checkpoint.discard()
    current = fingerprint(spec.path)
    if not checkpoint.exists():
        checkpoint.start(identity, current)
        return None
    record = checkpoint.read()
    for warning in check_same_job(record, identity, current, checkpoint.output):
        _log.warning(warning)
    if record.get("state") != "complete":
        return None
    if not checkpoint.output.exists():
        raise CheckpointMismatchError(
            f"the job that writes {str(checkpoint.output)!r} completed, but that file is gone; "
            "re-run with --restart to make it again")
    checkpoint.spool.clear()  # a kill after the record said complete left the parts
    return CorpusSummary(**{**record["summary"], "already_complete": True})


def _plan(client: EmbeddingClient, use_case: str | None, chunk_size: int | None,
          window: int | None, timeout: float | None) -> Plan:
    chunk = chunk_size or client.settings.chunk_size
    rows = window or chunk * client.settings.max_in_flight * live_workers(client, use_case)
    if chunk < 1 or rows < 2 * chunk:
        raise InvalidInputError(f"window {rows} is smaller than two chunks of {chunk} texts; "
                                "raise --window or lower --chunk-size")
    return plan_for(use_case, chunk, rows, timeout)


def _run(client: EmbeddingClient, source: Source, spec: InputSpec, checkpoint: Checkpoint,
         identity: Identity, errors_path: Path, route: RouteSpec, plan: Plan,
         on_progress: ProgressCallback | None) -> CorpusSummary:
    started = time.monotonic()
    spool = checkpoint.spool
    start = spool.open()
    killpoints.reached("before-parts")
    made_by = spool.model()
    served = route.served_by(made_by[0]) if made_by else client.serving(route)
    dim = client.registry.output_dim(served)
    dtype = np.dtype(served.output_dtype.array_dtype)
    width = served.output_dtype.width(dim)
    ledger = Ledger(start, source.id_type, width, dtype, made_by)
    _log.info("corpus job", input=str(spec.path), output=str(checkpoint.output),
              resumed_from=start, window=plan.window, in_flight=plan.in_flight_chunks)
    Run(client, source, spool, ledger, plan, on_progress)()
    moved = changes(checkpoint.read()["fingerprint"], fingerprint(spec.path))
    if moved:
        raise CheckpointMismatchError(
            f"{str(spec.path)!r} changed while the job ran ({'; '.join(moved)}); its rows may "
            "not match; re-run with --restart")
    model, revision = spool.model() or (served.model, "")
    killpoints.reached("before-merge")
    summary = _finish(checkpoint, identity, errors_path, width=width, dtype=dtype,
                      facts={"input": str(spec.path), "output": str(checkpoint.output),
                             "resumed_from": start, "rows_this_run": ledger.durable_end - start,
                             "seconds": round(time.monotonic() - started, 3),
                             "model": model, "revision": revision, "window": plan.window})
    _log.info("corpus done", **asdict(summary))
    return summary


def _finish(checkpoint: Checkpoint, identity: Identity, errors_path: Path, *, width: int,
            dtype: np.dtype, facts: dict[str, Any]) -> CorpusSummary:
    """Spool → output, errors file, completed record; then the parts go."""
    started = time.monotonic()
    spool, out = checkpoint.spool, checkpoint.output
    id_type: IdType = identity.options["id_type"]
    totals = {"embedded": 0, "cached": 0}
    for c in spool.columns("ids", "cached"):
        totals["embedded"] += len(c["ids"])
        totals["cached"] += int(c["cached"])
    if identity.options["output"] == "parquet":
        write_parquet(spool, out, id_type=id_type, width=width, dtype=dtype,
                      metadata={**identity.route, **facts, "input": identity.input})
    else:
        write_npy(spool, out, _ids_path(out), width=width, dtype=dtype)
    killpoints.reached("output-published")
    failed = write_errors(spool, errors_path)
    killpoints.reached("merged")
    seconds = time.monotonic() - started
    facts["seconds"] = round(facts["seconds"] + seconds, 3)
    summary = CorpusSummary(
        **facts, errors_file=str(errors_path) if failed else None,
        merge_seconds=round(seconds, 3),
        rows=totals["embedded"] + failed, embedded=totals["embedded"], failed=failed,
        cached=totals["cached"],
        texts_per_s=round(facts["rows_this_run"] / max(facts["seconds"], 1e-9), 1))
    record = checkpoint.read()
    checkpoint.write({**record, "state": "complete", "summary": asdict(summary)})
    killpoints.reached("completed")
    spool.clear()
    return summary
