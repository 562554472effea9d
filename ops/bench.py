"""``embedq bench``: the raw model and the same texts through the queue, scenario by scenario.

For each text set (short, like search queries; long, like sentences of about 40 tokens; or the
user's ``--input``) the raw ``SentenceTransformer.encode`` (fp32, batch 32) is measured before
and after the queue runs, and every queue scenario is printed as texts/s, its ratio to the mean
of the two raw figures, p50/p99 latency and the mean texts per model batch the worker ran. One
worker (default ``minilm`` fp32; any model and precision, ``auto`` included) serves a private
route with the cache off, so every text is computed; a last run with the cache on measures a
read-through hit.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.ops import bench_scenarios as scenarios
from embedq.ops.bench_stack import Figure, WorkerStack, bench_config, percentiles, raw_model
from embedq.ops.bench_texts import generated, read_texts
from embedq.producer.client import EmbeddingClient
from embedq.worker.models.cpu import read_cpu_features

ROUTE = "bench"  # the one route of the stack's config: the model and precision measured
_SEQUENTIAL_MAX = 500  # one at a time is slow by nature; this many give a stable p99


def _producer_cpu() -> float:
    """CPU seconds of this process (every producer thread) and of ended producer processes."""
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


def _texts(kind: str, count: int, input_path: Path | None) -> list[str]:
    return read_texts(input_path, count) if input_path else generated(kind, count, seed=7)


class _Run:
    """One text set through the stack: measures scenarios and keeps their figures."""

    def __init__(self, stack: WorkerStack, client: EmbeddingClient, kind: str,
                 texts: list[str], threads: int, processes: int) -> None:
        self.stack, self.client, self.kind, self.texts = stack, client, kind, texts
        self.threads, self.processes = threads, processes
        self.figures: list[Figure] = []

    def _measure(self, name: str, texts: list[str],
                 run: Callable[[], tuple[float | None, list[float]]]) -> None:
        """Run a scenario; ``run`` returns its latencies and, where the scenario times itself
        (processes start together on a signal), its own seconds."""
        first_line, cpu_before = self.stack.log_lines(), self.stack.cpu_seconds()
        commands, producer_before = self.stack.redis_commands(), _producer_cpu()
        started = time.perf_counter()
        timed, latencies = run()
        seconds = timed if timed is not None else time.perf_counter() - started
        producer = _producer_cpu() - producer_before
        worker = self.stack.cpu_seconds() - cpu_before
        commands = self.stack.redis_commands() - commands - 1  # less the INFO that counted
        cpu = worker / (seconds * (os.cpu_count() or 1))
        batches = self.stack.batches(first_line)
        in_model = sum(model for _, model in batches)
        requests = len(latencies) or len(texts)
        self.figures.append(Figure(
            f"{self.kind}: {name}", len(texts), seconds, len(texts) / seconds,
            latency_ms=percentiles(latencies) if latencies else {},
            mean_batch_texts=round(statistics.mean(t for t, _ in batches), 1) if batches
            else None, cpu_utilisation=round(cpu, 3),
            redis_commands=round(commands / requests, 2),
            producer_cpu_us=round(producer / requests * 1e6),
            worker_cpu_us=round(max(0.0, worker - in_model) / requests * 1e6)))

    def scenario(self, name: str) -> None:
        """Measure one scenario (one of ``bench_scenarios.NAMES``) on this text set."""
        client, texts = self.client, self.texts
        if name == "sequential":
            few = texts[:_SEQUENTIAL_MAX]
            self._measure("sequential, embed([t])", few,
                          lambda: (None, scenarios.sequential(client, few, ROUTE)))
        elif name == "threads":
            self._measure(f"{self.threads} threads, embed([t])", texts,
                          lambda: (None, scenarios.threaded(client, texts, ROUTE, self.threads)))
        elif name == "processes":
            per_process = max(1, self.threads // self.processes)
            self._measure(f"{self.processes} processes x {per_process} threads", texts,
                          lambda: scenarios.many_processes(self.client.settings, texts, ROUTE,
                                                           self.processes, per_process))
        elif name == "asyncio":
            self._measure(f"{len(texts)} concurrent aembed([t])", texts,
                          lambda: (None, scenarios.concurrent_aembed(client, texts, ROUTE)))
        elif name == "open-loop":
            self._measure(f"open loop, {len(texts)} submit then get", texts,
                          lambda: (None, scenarios.open_loop(client, texts, ROUTE)))
        elif name == "bulk":
            self._measure("bulk, embed_many", texts,
                          lambda: (None, scenarios.bulk(client, texts, ROUTE)))
        else:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(scenarios.NAMES)}")


def cache_hits(stack: WorkerStack, texts: list[str]) -> Figure:
    """Read-through hits: the worker restarted with the cache on computes ``texts`` once, then a
    cache-enabled client asks for each again, one at a time; a hit sends no message."""
    stack.restart({"EMBEDQ_CACHE_ENABLED": "true"})
    with stack.client(cache_enabled=True) as client:
        client.embed(texts, ROUTE, timeout=300)  # computed and written by the worker
        stack.settle()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the producer has read the model revision
            probe = client.submit([texts[0]], ROUTE)
            probe.get()
            if probe.messages == 0:
                break
            time.sleep(0.2)
        latencies, answered = [], 0
        started = time.perf_counter()
        for text in texts:
            began = time.perf_counter()
            job = client.submit([text], ROUTE)
            job.get()
            latencies.append(time.perf_counter() - began)
            answered += job.messages == 0
        seconds = time.perf_counter() - started
    return Figure("short: cache hit, read-through embed([t])", len(texts), seconds,
                  len(texts) / seconds, latency_ms=percentiles(latencies),
                  note=f"{answered}/{len(texts)} answered by the producer's read-through")


def print_table(figures: list[Figure]) -> None:
    """A plain table: scenario, texts/s, ratio to raw, latency, batch size, worker CPU."""
    print(f"{'scenario':46} {'texts':>6} {'texts/s':>8} {'x raw':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'batch':>6} {'cpu':>5} {'redis':>6} {'prod us':>7} {'work us':>7}")
    for f in figures:
        lat = f.latency_ms
        ratio = f"{f.ratio_to_raw:.2f}" if f.ratio_to_raw is not None else ""
        print(f"{f.scenario:46} {f.texts:6d} {f.texts_per_s:8.1f} {ratio:>6} "
              f"{lat.get('p50', ''):>7} {lat.get('p99', ''):>7} "
              f"{f.mean_batch_texts if f.mean_batch_texts is not None else '':>6} "
              f"{f.cpu_utilisation if f.cpu_utilisation is not None else '':>5} "
              f"{f.redis_commands if f.redis_commands is not None else '':>6} "
              f"{f.producer_cpu_us if f.producer_cpu_us is not None else '':>7} "
              f"{f.worker_cpu_us if f.worker_cpu_us is not None else '':>7}"
              + (f"  {f.note}" if f.note else ""))


def run_bench(*, model: str, precision: str, kinds: list[str], count: int,
              input_path: Path | None, chosen: list[str], threads: int, processes: int,
              concurrency: int | None, pool: str, json_out: Path | None,
              tls: bool = False) -> list[Figure]:
    """Raw encode, every chosen scenario through a private queue, raw again; print figures."""
    settings = load_settings()
    config = bench_config(Path(tempfile.mkdtemp(prefix="embedq-bench-config-")), model,
                          precision)
    sets = {kind: _texts(kind, count, input_path) for kind in kinds}
    raw = raw_model(load_registry(config), model, settings.model_cache_dir)
    print(f"{model} {precision} worker against raw {raw.what}, "
          f"{read_cpu_features().describe()}, {time.strftime('%Y-%m-%d')}"
          f"{', Redis over TLS (verified, private CA)' if tls else ''}", flush=True)
    before = {kind: raw.measure(texts, 32, f", before ({kind})") for kind, texts in sets.items()}
    single = {kind: raw.single(texts[:200], f" ({kind})") for kind, texts in sets.items()}
    stack = WorkerStack(model, precision, concurrency, pool,
                        {"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false"}, config,
                        tls=tls)
    runs: list[_Run] = []
    hit: Figure | None = None
    try:
        with stack.client(cache_enabled=False) as client:
            warm = generated("long", 256, seed=99)
            for _ in client.embed_many(warm, ROUTE, chunk_size=32, progress=False, timeout=600):
                pass  # waits for the model load in every pool process
            stack.settle()
            for kind, texts in sets.items():
                runs.append(_Run(stack, client, kind, texts, threads, processes))
                for name in chosen:
                    runs[-1].scenario(name)
        hit = cache_hits(stack, next(iter(sets.values()))[:300])
    finally:
        stack.stop()
        shutil.rmtree(config, ignore_errors=True)
    after = {kind: raw.measure(texts, 32, f", after ({kind})")
             for kind, texts in sets.items()}
    figures: list[Figure] = []
    for run in runs:
        baseline = (before[run.kind].texts_per_s + after[run.kind].texts_per_s) / 2
        group = [before[run.kind], after[run.kind], single[run.kind], *run.figures]
        for figure in group:
            figure.ratio_to_raw = round(figure.texts_per_s / baseline, 3)
        figures += group
    if hit is not None:
        figures.append(hit)
    print_table(figures)
    print("x raw: to the mean of raw encode (batch 32) before and after, same texts; "
          "batch: mean texts per model call in the worker; cpu: worker CPU / all cores; "
          "per request: redis commands, producer CPU us, worker CPU us outside model runs")
    if json_out:
        json_out.write_text(json.dumps([asdict(f) for f in figures], indent=2))
    return figures


def mixed_lengths(short: int = 600, long: int = 150) -> list[Figure]:
    """Token-budget batching against count-only batching on short queries mixed with passages."""
    import random

    import torch

    from embedq.config.registry import Precision
    from embedq.worker.batching import PassPolicy
    from embedq.worker.embedder import Embedder
    from embedq.worker.models.loading import load_encoder

    torch.set_num_threads(os.cpu_count() or 1)
    texts = generated("short", short, seed=1) + generated("passage", long, seed=1)
    random.Random(2).shuffle(texts)
    encoder = load_encoder(load_registry(), "minilm", Precision.FP32)
    policies = {
        "count-only, arrival order, 32/batch": None,
        "count-only, length-sorted, 32/batch": Embedder(encoder, PassPolicy(10**9, 32)),
        "token budget 4096, length-sorted, <=128": Embedder(encoder, PassPolicy(4096, 128)),
        "token budget 8192, length-sorted, <=64": Embedder(encoder, PassPolicy(8192, 64)),
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
