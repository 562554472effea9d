"""How fast ``embedq dashboard`` answers ``/metrics`` with many queues (issue 12 target: 50 ms).

    python benchmarks/bench_dashboard.py [--queues 20] [--requests 300] [--depth 100]

A private redis-server holds ``--queues`` queues with ``--depth`` messages each; the dashboard's
real HTTP server answers ``/metrics`` (the queue gauges, read from Redis in one pipelined round
trip per scrape) and ``/api/figures``. No model and no worker are involved; none is needed.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.request

import redis

from embedq.ops.dashboard.exporter import queue_registry
from embedq.ops.dashboard.sampler import Sampler, Sources
from embedq.ops.dashboard.server import make_server
from embedq.ops.redis_server import RedisServer
from embedq.tasks.queue_stats import QueueStats, queue_stats


def timed_gets(url: str, count: int) -> list[float]:
    """Milliseconds per GET, one after another on fresh connections (as a scraper does)."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return (f"{name}: p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms, "
            f"max {ordered[-1]:.2f} ms over {len(ordered)} requests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--depth", type=int, default=100)
    args = parser.parse_args()
    queues = [f"embed.model{i}.fp32" for i in range(args.queues)]
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        for queue in queues:
            client.lpush(queue, *[b"x" * 200] * args.depth)

        def read() -> list[QueueStats]:
            return queue_stats(client, queues)

        sampler = Sampler(Sources(read, dict, list, {q: [q] for q in queues}), interval_s=1.0)
        sampler.start()
        http = make_server("127.0.0.1", 0, sampler, queue_registry(read), None, None)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{http.server_address[1]}"
        timed_gets(f"{base}/metrics", 10)  # warm up connections and imports
        print(summary(f"/metrics, {args.queues} queues", timed_gets(f"{base}/metrics",
                                                                     args.requests)))
        print(summary(f"/api/figures, {args.queues} queues",
                      timed_gets(f"{base}/api/figures", args.requests // 3)))
        http.shutdown()
        sampler.stop()


if __name__ == "__main__":
    main()
