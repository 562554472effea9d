"""What one broker Redis carries: commands and Redis CPU per request, for each `embedq bench`
scenario, with the `hashing` model (the queue alone, no model time).

    HF_HUB_OFFLINE=1 flock /work/bench.lock python benchmarks/bench_broker_capacity.py

One `embedq worker -m hashing` on a private redis-server, the cache off (every text travels).
For each scenario the Redis's own counters are read before and after: ``INFO commandstats``
(calls, and usec: time spent executing commands) and ``INFO cpu`` (the server process's user +
system CPU seconds, which also counts reading and writing sockets). Redis runs its commands on
one thread, so one core is its ceiling: requests/s one Redis carries = 1 / (Redis CPU seconds
per request). The figure is measured while producer, worker and Redis share this machine's
cores, so it is a floor: a saturated Redis pipelines more per read and spends less per
request. An idle period measures what the consumers' polls and heartbeats cost per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from embedq.ops import bench_scenarios as scenarios
from embedq.ops.bench_stack import WorkerStack, bench_config
from embedq.ops.bench_texts import generated
from embedq.worker.models.cpu import read_cpu_features

ROUTE = "bench"


@dataclass(frozen=True)
class Counters:
    """The Redis's own counters at one moment."""

    calls: float
    usec: float
    cpu_s: float
    at: float

    @classmethod
    def read(cls, client: redis.Redis) -> Counters:
        stats, cpu = client.info("commandstats"), client.info("cpu")
        return cls(sum(int(e["calls"]) for e in stats.values()),
                   sum(int(e["usec"]) for e in stats.values()),
                   float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), time.monotonic())


@dataclass(frozen=True)
class Row:
    """One scenario's cost to Redis, per request (per text for bulk)."""

    scenario: str
    requests: int
    seconds: float
    commands: float
    command_us: float
    redis_cpu_us: float
    per_core: float  # requests (texts for bulk) per second one Redis core carries


def _row(name: str, requests: int, before: Counters, after: Counters,
         idle: Counters | None = None) -> Row:
    """Per request, less what the idle stack costs in the same time (``idle`` holds per-second
    rates: the consumers' polls and heartbeats go on whatever the load)."""
    seconds = after.at - before.at
    calls = after.calls - before.calls - 2  # less our two INFOs
    usec, cpu = after.usec - before.usec, after.cpu_s - before.cpu_s
    if idle is not None:
        calls, usec = calls - idle.calls * seconds, usec - idle.usec * seconds
        cpu -= idle.cpu_s * seconds
    return Row(name, requests, round(seconds, 2), round(calls / requests, 2),
               round(usec / requests, 1), round(cpu / requests * 1e6, 1),
               round(requests / cpu) if cpu > 0 else 0)


def _run(stack: WorkerStack, admin: redis.Redis, name: str, count: int, idle: Counters) -> Row:
    texts = [f"{name} {i} {t}" for i, t in enumerate(generated("short", count, seed=3))]
    with stack.client(cache_enabled=False) as client:
        client.embed(["warm"], ROUTE, timeout=60)  # connected, listener running
        before = Counters.read(admin)
        if name == "sequential":
            scenarios.sequential(client, texts, ROUTE)
        elif name == "threads":
            scenarios.threaded(client, texts, ROUTE, 16)
        elif name == "asyncio":
            scenarios.concurrent_aembed(client, texts, ROUTE)
        elif name == "open-loop":
            scenarios.open_loop(client, texts, ROUTE)
        else:
            scenarios.bulk(client, texts, ROUTE)
        after = Counters.read(admin)
    return _row(name, len(texts), before, after, idle)


def _processes(stack: WorkerStack, admin: redis.Redis, count: int, idle: Counters) -> Row:
    """Four producer processes of four threads; each one's connecting and warm-up request
    falls inside the counters (counted as one request each: a slight overestimate)."""
    texts = [f"processes {i} {t}" for i, t in enumerate(generated("short", count, seed=5))]
    before = Counters.read(admin)
    scenarios.many_processes(stack.settings, texts, ROUTE, 4, 4)
    after = Counters.read(admin)
    return _row("processes", len(texts) + 4, before, after, idle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000, help="Texts per scenario.")
    parser.add_argument("--bulk", type=int, default=20000, help="Texts for bulk.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    config = bench_config(Path(tempfile.mkdtemp(prefix="embedq-cap-")), "hashing", "fp32")
    stack = WorkerStack("hashing", "fp32", 1, "prefork",
                        {"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false"}, config)
    admin = redis.Redis.from_url(stack.redis.url)
    rows: list[Row] = []
    try:
        with stack.client(cache_enabled=False) as client:
            client.embed(["first"], ROUTE, timeout=120)
        stack.settle()
        quiet = Counters.read(admin)
        time.sleep(10.0)
        idle_row = _row("idle, per s", 1, quiet, Counters.read(admin))
        seconds = idle_row.seconds
        idle = Counters(idle_row.commands / seconds, idle_row.command_us / seconds,
                        idle_row.redis_cpu_us / 1e6 / seconds, 0.0)
        idle_row = Row("idle, per s", 1, seconds, round(idle.calls, 1), round(idle.usec, 1),
                       round(idle.cpu_s * 1e6, 1), 0)
        for name in scenarios.NAMES:
            if name == "processes":
                rows.append(_processes(stack, admin, args.count, idle))
            else:
                count = {"bulk": args.bulk, "sequential": min(args.count, 500)}.get(
                    name, args.count)
                rows.append(_run(stack, admin, name, count, idle))
            print(rows[-1], flush=True)
    finally:
        stack.stop()
        shutil.rmtree(config, ignore_errors=True)
    print(f"\nhashing fp32, one worker process, Redis {admin_version(stack)}; "
          f"{read_cpu_features().describe()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(f"{'scenario':12} {'requests':>8} {'s':>6} {'cmds/req':>8} {'cmd us/req':>10} "
          f"{'redis cpu us/req':>16} {'req/s per Redis core':>20}")
    for row in [*rows, idle_row]:
        print(f"{row.scenario:12} {row.requests:8d} {row.seconds:6.2f} {row.commands:8.2f} "
              f"{row.command_us:10.1f} {row.redis_cpu_us:16.1f} {row.per_core:20d}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in [*rows, idle_row]], indent=2))


def admin_version(stack: WorkerStack) -> str:
    """The redis-server version the stack ran (read from the binary: the server is stopped)."""
    out = subprocess.run([stack.redis.binary, "--version"], capture_output=True, text=True,
                         check=False).stdout
    return next((part.split("=")[1] for part in out.split() if part.startswith("v=")), "?")


if __name__ == "__main__":
    main()
