"""How long a worker told to stop keeps computing: the autoscaler's shrink, measured alone.

    HF_HUB_OFFLINE=1 python benchmarks/bench_warm_stop.py [--runs 3] [--route etl]

One `embedq worker -c 1 --threads 1` of the route's queue (MiniLM int8 for `etl`) serves a
backlog of bulk-sized messages (64 texts each, as `submit` sends them); after a few seconds of
steady work it gets SIGTERM (Celery's warm shutdown, what `Pool.shrink` sends). Printed per run:
when its last batch was answered or handed back, the texts it still answered, and the CPU its pool
process spent from the signal to its exit (the shutdown's own included). Reuse a warm model
cache (EMBEDQ_MODEL_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.ops.bench_texts import generated
from embedq.ops.redis_server import RedisServer
from embedq.producer.client import EmbeddingClient
from embedq.tasks.names import route_queue


def _read(process: subprocess.Popen[str], lines: list[tuple[float, dict[str, object]]]) -> None:
    for line in process.stdout or []:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append((time.monotonic(), json.loads(line)))


def one_run(url: str, route: str, texts: int, steady_s: float, tag: str) -> str:
    registry = load_registry(None)
    spec = registry.routes[route]
    queue = route_queue(spec.served_by(spec.chain[0]))
    model, precision = queue.split(".")[1:3]
    env = {**os.environ, "EMBEDQ_REDIS_URL": url, "EMBEDQ_LOG_FORMAT": "json"}
    worker = subprocess.Popen([sys.executable, "-m", "embedq.cli", "worker", "-m", model, "-p",
                               precision, "-c", "1", "--threads", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, dict[str, object]]] = []
    threading.Thread(target=_read, args=(worker, lines), daemon=True).start()
    client = EmbeddingClient(Settings(redis_url=url, timeout_s=600))
    try:
        client.embed([f"warm {tag}"], route)
        client.submit([f"{tag} {t}" for t in generated("short", texts, seed=1)], route)
        time.sleep(steady_s)
        pool = psutil.Process(worker.pid).children()[0]
        cpu = pool.cpu_times()
        before = cpu.user + cpu.system
        after = before
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        while pool.is_running() and pool.status() != psutil.STATUS_ZOMBIE:
            try:
                cpu = pool.cpu_times()
            except psutil.Error:
                break
            after = cpu.user + cpu.system
            time.sleep(0.01)
        worker.wait(timeout=120)
        exited = time.monotonic() - signalled
    finally:
        client.close()
        if worker.poll() is None:
            worker.kill()
    late = [(at - signalled, entry) for at, entry in lines if at >= signalled
            and entry.get("event") in ("batch_embedded", "batch_handed_back")]
    answered = sum(int(e.get("batch_texts", 0)) for _, e in late  # type: ignore[call-overload]
                   if e["event"] == "batch_embedded")
    back = sum(int(e.get("texts", 0)) for _, e in late  # type: ignore[call-overload]
               if e["event"] == "batch_handed_back")
    last = max((at for at, _ in late), default=0.0)
    return (f"last batch settled {last:.2f} s after SIGTERM; {answered} texts answered and "
            f"{back} handed back after it; pool process CPU from SIGTERM to exit "
            f"{after - before:.2f} s; worker exited after {exited:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--route", default="etl")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--steady-s", type=float, default=4.0)
    args = parser.parse_args()
    stamp = str(time.time())
    for run in range(args.runs):
        with RedisServer() as server:
            print(f"run {run + 1}: " + one_run(server.url, args.route, args.texts, args.steady_s,
                                               f"{stamp}-{run}"), flush=True)


if __name__ == "__main__":
    main()
