"""Issue 23's moving workload on `embedq up` fixed and `embedq up --autoscale`.

    HF_HUB_OFFLINE=1 python benchmarks/bench_autoscale_workload.py [--etl 20000] [--clustering 3000]

The packaged routes; an `etl` backlog submitted at once (it lies on the queue), a `clustering`
burst ``--burst-after-s`` later, and `search` single-text requests every 0.1 s throughout.
Prints the total time (first submit to last vector), when each backlog was done, search's
p50/p99, and the most worker processes busy at once (a process that used half a core or more over
a half-second sample) for each stack. Reuse a warm model cache (EMBEDQ_MODEL_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import psutil
from bench_autoscale_memory import start, stop

from embedq.config.settings import Settings
from embedq.ops.bench_texts import generated
from embedq.producer.client import EmbeddingClient


class BusySampler(threading.Thread):
    """Counts the stack's worker processes that are busy, every half second."""

    def __init__(self, up: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(up.pid)
        self.counts: Counter[int] = Counter()
        self.over: list[str] = []  # which processes were busy when more than the cores were
        self.by_queue: Counter[str] = Counter()  # CPU seconds of each queue's workers
        self.cores_used: list[float] = []  # per sample
        self.queue_used: list[Counter[str]] = []  # per sample: cores each queue's workers used
        # per sample: each worker process's cores, and the host's idle cores ("idle")
        self.trace: list[tuple[float, dict[str, float]]] = []
        self.stopping = threading.Event()
        self.started = time.monotonic()

    def _cpu(self) -> dict[int, tuple[float, str]]:
        found = {}
        for process in self.root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                command = process.cmdline()
                if "worker" in command:
                    times = process.cpu_times()
                    options = command[command.index("worker"):]
                    queue = ".".join(options[options.index(flag) + 1] for flag in ("-m", "-p")
                                     if flag in options)
                    role = "pool" if "worker" in process.parent().cmdline() else "main"
                    found[process.pid] = (times.user + times.system,
                                          f"{queue} {role} {process.pid}")
        return found

    def run(self) -> None:
        before, at = self._cpu(), time.monotonic()
        idle_before = _idle_s()
        cores = os.cpu_count() or 1
        while not self.stopping.wait(0.5):
            now, seen = time.monotonic(), self._cpu()
            busy = {name: (used - before.get(pid, (used, ""))[0]) / (now - at)
                    for pid, (used, name) in seen.items()}
            used: Counter[str] = Counter()
            for name, share in busy.items():
                self.by_queue[name.split()[0]] += share * (now - at)
                used[name.split()[0]] += share
            self.cores_used.append(sum(busy.values()))
            self.queue_used.append(used)
            idle_now = _idle_s()
            self.trace.append((round(now - self.started, 2),
                               {name: round(share, 3) for name, share in busy.items()}
                               | {"idle": round((idle_now - idle_before) / (now - at), 3)}))
            idle_before = idle_now
            busy = {name: share for name, share in busy.items() if share >= 0.5}
            self.counts[len(busy)] += 1
            if len(busy) > cores:
                self.over.append(f"  {now - self.started:6.1f} s: " + ", ".join(
                    f"{name} {share:.0%}" for name, share in busy.items()))
            before, at = seen, now

    def summary(self) -> str:
        """The most busy at once, how often more than the cores were, and which they were."""
        cores = os.cpu_count() or 1
        over = sum(n for busy, n in self.counts.items() if busy > cores)
        idle = sum(cores - min(used, cores) for used in self.cores_used) * 0.5
        return (f"worker CPU-seconds { {q: round(s) for q, s in self.by_queue.most_common()} }, "
                f"{idle:.0f} core-seconds unused; busy worker processes: at most "
                f"{max(self.counts, default=0)}, more than "
                f"{cores} in {over} of {sum(self.counts.values())} samples"
                + "".join(f"\n{line}" for line in self.over)
                + "\n  worker cores in use, 5 s means: " + _means(self.cores_used)
                + "".join(f"\n    {queue:12} " + _means([u[queue] for u in self.queue_used])
                          for queue, _ in self.by_queue.most_common()))


def _idle_s() -> float:
    """Seconds the host's cores have idled since boot (what no process, worker or not, used)."""
    times = psutil.cpu_times()
    return times.idle + getattr(times, "iowait", 0.0)


def _means(samples: list[float], per: int = 10) -> str:
    """The means of every ``per`` half-second samples (5 s), one decimal each."""
    return " ".join(f"{sum(samples[i:i + per]) / len(samples[i:i + per]):.1f}"
                    for i in range(0, len(samples), per))


def _decisions(log: list[tuple[float, str]], since: float) -> list[str]:
    """The autoscaler's decisions, each with its time from the first submit."""
    found = []
    for at, line in log:
        if '"autoscale_decision"' in line:
            entry = json.loads(line)
            found.append(f"  {at - since:6.1f} s {entry['queue']}: {entry['size_from']} -> "
                         f"{entry['size_to']} ({entry['reason']})")
    return found


def run(extra: list[str], etl: int, clustering: int, burst_after_s: float, tag: str,
        trace: Path | None = None) -> str:
    log: list[tuple[float, str]] = []
    up, url = start(extra, log)
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
    sampler = BusySampler(up)
    sampler.start()
    searcher.start()
    started, since = time.perf_counter(), time.monotonic()
    sampler.started = since
    etl_job = client.submit([f"{tag} {t}" for t in generated("short", etl, seed=1)], "etl")
    time.sleep(burst_after_s)
    burst = client.submit([f"{tag} {t}" for t in generated("short", clustering, seed=2)],
                          "clustering")
    finished: dict[str, float] = {}
    for name, job in (("etl", etl_job), ("clustering", burst)):
        job.job.future.add_done_callback(
            lambda _, name=name: finished.setdefault(name, time.perf_counter() - started))
    etl_job.get(timeout=600)
    burst.get(timeout=600)
    total = time.perf_counter() - started
    done.set()
    sampler.stopping.set()
    searcher.join(timeout=30)
    client.close()
    stop(up)
    if trace is not None:
        trace.write_text(json.dumps({"total_s": total, "done_s": finished,
                                     "samples": sampler.trace,
                                     "decisions": _decisions(log, since)}))
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1e3
    return (f"total {total:.1f} s (etl done at {finished['etl']:.1f} s, clustering at "
            f"{finished['clustering']:.1f} s); "
            f"search p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies)} requests); "
            + sampler.summary() + "".join(f"\n{line}" for line in _decisions(log, since)))


def _config(clustering_precision: str) -> None:
    """The packaged routes with clustering at ``clustering_precision`` (for a machine whose
    `auto` decision is not measured yet: its first start measures every candidate for minutes),
    through EMBEDQ_CONFIG_DIR, so both stacks run the same routes."""
    if clustering_precision == "auto":
        return
    packaged = Path(str(resources.files("embedq.config")))
    folder = Path(tempfile.mkdtemp(prefix="embedq-workload-config-"))
    shutil.copyfile(packaged / "models.json", folder / "models.json")
    routes = json.loads((packaged / "routes.json").read_text())
    routes["routes"]["clustering"]["precision"] = clustering_precision
    (folder / "routes.json").write_text(json.dumps(routes))
    os.environ["EMBEDQ_CONFIG_DIR"] = str(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--etl", type=int, default=20000)
    parser.add_argument("--clustering", type=int, default=3000)
    parser.add_argument("--burst-after-s", type=float, default=5.0)
    parser.add_argument("--clustering-precision", default="auto")
    parser.add_argument("--trace", type=Path, help="a folder for each stack's samples (JSON): "
                        "every worker process's cores every half second, and the decisions")
    args = parser.parse_args()
    _config(args.clustering_precision)
    stamp = str(time.time())
    for name, extra in (("fixed", []), ("autoscale", ["--autoscale"])):
        trace = args.trace / f"{name}-{stamp}.json" if args.trace else None
        print(f"{name + ':':10} " + run(extra, args.etl, args.clustering, args.burst_after_s,
                                        name[0] + stamp, trace), flush=True)


if __name__ == "__main__":
    main()
