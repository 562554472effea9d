"""The issue's precision table for MiniLM and mpnet, run on demand (not part of the suite).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_precision.py [--texts 512] [--threads 2]

For each model, every precision that runs here is measured beside fp32 in one process (so the
throughput ratio is fair on a noisy machine), with RSS from fresh processes, and checked against
the targets: process RSS <= 50 % of fp32's, >= 1.5x fp32 texts/s at batch 32, STS-B dev
Spearman drop <= 0.005, mean cosine to fp32 >= 0.99.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from shared_data import data_dir

from embedq.config.precisions import INT8_MAX_SPEARMAN_DROP, INT8_MIN_MEAN_COSINE
from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.ops.precision_eval import PrecisionFigures, evaluate, table

MAX_MEMORY_SHARE = 0.5
MIN_SPEEDUP = 1.5


def targets(row: PrecisionFigures, fp32: PrecisionFigures) -> dict[str, bool]:
    """Which of the issue's four targets a row meets."""
    return {
        # Process RSS, as MEASURED.md asks: parameter bytes would flatter every int8 path.
        "memory<=50%": row.rss_mib <= MAX_MEMORY_SHARE * fp32.rss_mib,
        "speed>=1.5x": row.speedup >= MIN_SPEEDUP,
        "spearman_drop<=0.005": row.spearman_drop <= INT8_MAX_SPEARMAN_DROP,
        "cos>=0.99": row.mean_cosine >= INT8_MIN_MEAN_COSINE,
    }


def main() -> None:
    """Measure both models and print one table, the target checks and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "mpnet"])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = load_settings()
    registry = load_registry(settings.config_dir)
    rows: list[PrecisionFigures] = []
    checks: dict[str, dict[str, bool]] = {}
    for model in args.models:
        measured, _ = evaluate(registry, model, settings, stsb=data_dir(args.data) / "stsb_dev.csv",
                               texts=args.texts, pairs=None, threads=args.threads)
        rows += measured
        for row in measured[1:]:
            checks[f"{model} {row.precision}"] = targets(row, measured[0])
    print(table(rows))
    for name, met in checks.items():
        print(name, " ".join(f"{k}:{'yes' if ok else 'NO'}" for k, ok in met.items()))
    document = json.dumps({"rows": [asdict(r) for r in rows], "targets": checks}, indent=2)
    if args.json is not None:
        args.json.write_text(document)
    print(document)


if __name__ == "__main__":
    main()
