"""Memory of `embedq up` fixed against `embedq up --autoscale` once two routes idle, and the
first request to an idled route (issue 23's second target).

    HF_HUB_OFFLINE=1 python benchmarks/bench_autoscale_memory.py [--idle-s 120]

Both stacks serve the packaged routes (search, etl, clustering). The fixed stack is measured once
every worker answers; the autoscaled one after ``--idle-s`` of search-only traffic (one request
every half second), when etl and clustering have gone to zero. Memory is the RSS summed over
every process of the stack (shared pages count once per process, as `ps` shows them). Then one
clustering request is timed: the pool's cold start plus the request. Reuse a warm model cache
(EMBEDQ_MODEL_CACHE_DIR): a first start of mpnet `auto` measures its candidates for minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

import psutil

from embedq.config.settings import Settings
from embedq.producer.client import EmbeddingClient


def start(extra: list[str], log: list[tuple[float, str]] | None = None
          ) -> tuple[subprocess.Popen[str], str]:
    """`embedq up` without Flower, dashboard and gateway; returns it and its Redis URL. With
    ``log``, the stack's later log lines are kept there with the monotonic time they came."""
    up = subprocess.Popen([sys.executable, "-m", "embedq.cli", "up", "--no-flower",
                           "--dashboard-port", "0", "--no-gateway", *extra],
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert up.stderr is not None
    for line in up.stderr:
        if found := re.search(r"EMBEDQ_REDIS_URL=(redis://\S+)", line):
            threading.Thread(target=_keep, args=(up, log), daemon=True).start()
            return up, found.group(1)
    raise SystemExit("embedq up exited before it was ready")


def _keep(up: subprocess.Popen[str], log: list[tuple[float, str]] | None) -> None:
    """Read the stack's log to its end (it must never block on a full pipe)."""
    for line in up.stderr or []:
        if log is not None:
            log.append((time.monotonic(), line))


def rss_mib(up: subprocess.Popen[str]) -> float:
    """RSS of the stack: `embedq up` and every descendant."""
    root = psutil.Process(up.pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def stop(up: subprocess.Popen[str]) -> None:
    up.send_signal(signal.SIGTERM)
    up.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-s", type=float, default=120.0)
    args = parser.parse_args()
    up, url = start([])
    client = EmbeddingClient(Settings(redis_url=url))
    client.embed(["warm up"], "search")
    time.sleep(5)
    fixed = rss_mib(up)
    client.close()
    stop(up)
    print(f"fixed stack, every worker up: {fixed:.0f} MiB RSS", flush=True)

    up, url = start(["--autoscale"])
    client = EmbeddingClient(Settings(redis_url=url))
    ended = time.monotonic() + args.idle_s
    latencies = []
    while time.monotonic() < ended:
        started = time.perf_counter()
        client.embed([f"search query {len(latencies)}"], "search")
        latencies.append(time.perf_counter() - started)
        time.sleep(0.5)
    scaled = rss_mib(up)
    started = time.perf_counter()
    client.embed(["the first clustering request after the idle time"], "clustering",
                 timeout=300)
    first = time.perf_counter() - started
    client.close()
    stop(up)
    latencies.sort()
    print(f"autoscaled stack after {args.idle_s:.0f}s of search only: {scaled:.0f} MiB RSS "
          f"({scaled / fixed:.2f}x the fixed stack)")
    print(f"search p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
          f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1e3:.1f} ms "
          f"over {len(latencies)} requests")
    print(f"first clustering request after idling: {first:.2f} s (cold start included)")
    print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
