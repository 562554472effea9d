"""Goodput under a spike (issue 19): ``python benchmarks/bench_overload.py [--seconds 60]``.

One worker (default ``minilm`` fp32, cache off) behind a private Redis. Its capacity is measured
in the same run (a saturated ``embed_many``, before and after); unique short texts are then
offered at 0.7x, 2x and 5x that capacity with a 2 s deadline each, with the default queueing
(oldest first) and a 2x spike while an ``embed_many`` of 20,000 texts runs on the same queue;
then, for comparison, the same spikes with adaptive LIFO (``EMBEDQ_LIFO_AFTER_S=0.5``). See
`embedq.ops.bench_overload` for what each column means.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from embedq.ops.bench_overload import (
    as_json,
    capacity,
    measure_spike,
    print_figures,
    with_bulk,
)
from embedq.ops.bench_stack import WorkerStack, bench_config
from embedq.ops.bench_texts import generated
from embedq.worker.models.cpu import read_cpu_features


def unique_texts(seed: int) -> Iterator[str]:
    """Short texts (8-15 tokens), never the same twice: nothing is answered by deduplication."""
    base = generated("short", 20_000, seed=seed)
    for n in itertools.count():
        yield f"{base[n % len(base)]} {n // len(base)}" if n >= len(base) else base[n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--capacity-texts", type=int, default=3000,
                        help="texts of the saturated embed_many that measures capacity")
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument("--factors", default="0.7,2,5")
    parser.add_argument("--no-lifo", action="store_true",
                        help="skip the adaptive LIFO comparison")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    config = bench_config(Path(tempfile.mkdtemp(prefix="embedq-overload-")), args.model,
                          args.precision)
    print(f"{args.model} {args.precision}, one worker, cache off, deadline {args.deadline:g}s, "
          f"{read_cpu_features().describe()}, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    stack = WorkerStack(args.model, args.precision, None, "prefork",
                        {"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false"}, config)
    texts = unique_texts(7)
    rows = []
    try:
        policies = [("oldest first", {}), ("adaptive LIFO", {"EMBEDQ_LIFO_AFTER_S": "0.5"})]
        for policy, env in policies:
            if env:
                if args.no_lifo:
                    break
                stack.restart({"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false", **env})
            with stack.client(cache_enabled=False) as client:
                for _ in client.embed_many(generated("long", 256, seed=99), "bench",
                                           progress=False):
                    pass  # every pool process has loaded the model
                stack.settle()
                cap = capacity(client, texts, args.capacity_texts)
                print(f"{policy}: capacity {cap:.1f} texts/s", flush=True)
                first = len(rows)
                for factor in factors:
                    rows.append(measure_spike(stack, client, texts, label=f"{policy} {factor:g}x",
                                              cap=cap, factor=factor, seconds=args.seconds,
                                              deadline_s=args.deadline))
                    print_figures(rows[-1:])
                    stack.settle()
                if not env and args.bulk:
                    figures, report = with_bulk(stack, client, texts,
                                                generated("short", args.bulk, seed=3), cap=cap,
                                                seconds=args.seconds, deadline_s=args.deadline)
                    rows.append(figures)
                    print_figures(rows[-1:])
                    print(report, flush=True)
                    stack.settle()
                after = capacity(client, texts, args.capacity_texts)
                print(f"{policy}: capacity after {after:.1f} texts/s; ratios use the mean "
                      f"{(cap + after) / 2:.1f}", flush=True)
                for row in rows[first:]:
                    row.goodput_x_capacity = round(row.goodput_per_s / ((cap + after) / 2), 3)
    finally:
        stack.stop()
        shutil.rmtree(config, ignore_errors=True)
    print()
    print_figures(rows)
    if args.json:
        args.json.write_text(as_json(rows))


if __name__ == "__main__":
    main()
