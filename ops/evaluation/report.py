"""How results are shown: one aligned table, or one JSON object for scripts."""

from __future__ import annotations

import math
from typing import Any

from embedq.ops.evaluation.runner import EvalResult


def _mib(value: int | None) -> str:
    return f"{value / 2**20:.0f} MiB" if value else "-"


def table(results: list[EvalResult]) -> str:
    """Routes as rows; the task's figures, texts/s and worker memory as columns."""
    names = list(results[0].metrics)
    header = ["route", "model", "precision", *names, "texts/s", "worker memory"]
    rows = [[r.route, r.model, r.precision, *(f"{r.metrics[n]:.4f}" for n in names),
             f"{r.texts_per_s:.1f}", _mib(r.worker_memory_bytes)] for r in results]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    title = f"{results[0].task} on {results[0].data} ({results[0].texts} texts per route)"
    return "\n".join([title, *("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                               .rstrip() for line in lines)])


def _finite(value: float) -> float | None:
    """JSON has no NaN (a constant similarity has no correlation): such a figure is null."""
    return value if math.isfinite(value) else None


def result_document(result: EvalResult) -> dict[str, Any]:
    """One result as a flat JSON object: the metric keys sit at the top level."""
    metrics = {name: _finite(value) for name, value in result.metrics.items()}
    return {"task": result.task, "route": result.route, "model": result.model,
            "precision": result.precision, "name": result.name, **metrics,
            "primary": result.primary, "texts": result.texts,
            "texts_per_s": round(result.texts_per_s, 2),
            "worker_memory_bytes": result.worker_memory_bytes, "data": result.data,
            "time": result.time}


def json_document(results: list[EvalResult]) -> dict[str, Any]:
    """One object: the single result itself, or ``{"task", "results": [...]}`` for --compare."""
    if len(results) == 1:
        return result_document(results[0])
    return {"task": results[0].task, "results": [result_document(r) for r in results]}
