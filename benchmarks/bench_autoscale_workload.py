"""Issue 23's moving workload on `embedq up` fixed and `embedq up --autoscale`.

    HF_HUB_OFFLINE=1 python benchmarks/bench_autoscale_workload.py [--etl 20000] [--clustering 3000]

The packaged routes; an `etl` backlog submitted at once (it lies on the queue), a `clustering`
burst ``--burst-after-s`` later, and `search` single-text requests every 0.1 s throughout.
Prints the total time (first submit to last vector) and search's p50/p99 for each stack. Reuse a
warm model cache (EMBEDQ_MODEL_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import threading
import time

from bench_autoscale_memory import start, stop

from embedq.config.settings import Settings
from embedq.ops.bench_texts import generated
from embedq.producer.client import EmbeddingClient


def run(extra: list[str], etl: int, clustering: int, burst_after_s: float, tag: str) -> str:
    up, url = start(extra)
    client = EmbeddingClient(Settings(redis_url=url, timeout_s=600))
    for route in ("search", "etl", "clustering"):
        client.embed([f"warm {route} {tag}"], route)
    latencies: list[float] = []
    done = threading.Event()

    def search() -> None:
        while not done.is_set():
            started = time.perf_counter()
            client.embed([f"{tag} query {len(latencies)}"], "search")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.1)

    searcher = threading.Thread(target=search, daemon=True)
    searcher.start()
    started = time.perf_counter()
    etl_job = client.submit([f"{tag} {t}" for t in generated("short", etl, seed=1)], "etl")
    time.sleep(burst_after_s)
    burst = client.submit([f"{tag} {t}" for t in generated("short", clustering, seed=2)],
                          "clustering")
    etl_job.get(timeout=600)
    burst.get(timeout=600)
    total = time.perf_counter() - started
    done.set()
    searcher.join(timeout=30)
    client.close()
    stop(up)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1e3
    return (f"total {total:.1f} s; search p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"({len(latencies)} requests)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--etl", type=int, default=20000)
    parser.add_argument("--clustering", type=int, default=3000)
    parser.add_argument("--burst-after-s", type=float, default=5.0)
    args = parser.parse_args()
    stamp = str(time.time())
    print("fixed:     " + run([], args.etl, args.clustering, args.burst_after_s, "f" + stamp),
          flush=True)
    print("autoscale: " + run(["--autoscale"], args.etl, args.clustering, args.burst_after_s,
                              "a" + stamp), flush=True)


if __name__ == "__main__":
    main()
