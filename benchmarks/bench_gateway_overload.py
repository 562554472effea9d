"""The HTTP gateway under a spike (issue 19): ``python benchmarks/bench_gateway_overload.py``.

One minilm fp32 worker (prefork, 2 processes, cache off) and one ``embedq gateway`` process
(its defaults; each request states its client's deadline in the header the OpenAI SDKs send).
The gateway's capacity is measured with 64 and with 256 closed-loop keep-alive clients (answers
per second, the better of the two); then requests of one short text are offered open-loop at
``--factor`` x that capacity for ``--seconds``, each with a client deadline (the client gives up
and closes its connection at the deadline, which cancels its texts in the gateway). Counted per
request: 200 within the deadline (goodput), 429 (and how fast it came), timeouts, anything else.
The load generator shares the host's cores with what it measures, so it runs on uvloop, the
cheapest event loop (``--loop asyncio`` for the standard one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import redis
import uvloop
from bench_gateway import Connection, Gateway, short_sentences
from shared_data import data_dir

from embedq.gateway.app import CLIENT_TIMEOUT_HEADER
from embedq.ops.bench_overload import open_loop
from embedq.ops.bench_stack import WorkerStack


async def _post(connection: Connection, text: str, timeout_s: float = 600.0) -> int:
    """One request on a keep-alive connection, saying how long its client waits as the OpenAI
    SDKs do; the status (the body is read and dropped)."""
    body = json.dumps({"input": text, "model": "search"}).encode()
    connection.writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                            b"application/json\r\n%s: %g\r\nContent-Length: %d\r\n\r\n%s"
                            % (CLIENT_TIMEOUT_HEADER.encode(), timeout_s, len(body), body))
    head = await connection.reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await connection.reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def closed_loop(port: int, texts: list[str], clients: int) -> float:
    """``clients`` keep-alive connections posting back to back: answered texts per second."""
    connections = [await Connection.open(port) for _ in range(clients)]
    pending = iter(texts)
    statuses: Counter[int] = Counter()

    async def client(connection: Connection) -> None:
        for text in pending:  # one shared iterator: each text is posted once
            statuses[await _post(connection, text)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    seconds = time.perf_counter() - started
    for connection in connections:
        connection.close()
    if set(statuses) != {200}:
        print(f"closed loop of {clients}: statuses {dict(statuses)}", flush=True)
    return statuses[200] / seconds


async def spike(port: int, texts: list[str], rate: float, seconds: float, deadline_s: float,
                clients: int) -> tuple[Counter[str], list[float], list[float]]:
    """Open-loop requests at ``rate``/s over a pool of ``clients`` keep-alive connections (as
    an HTTP client library keeps them); a request that meets its deadline, waiting for a
    connection included, gives up and closes its connection, which cancels it in the gateway.
    Returns outcome counts, latencies of answers within the deadline and of 429s."""
    outcomes: Counter[str] = Counter()
    good: list[float] = []
    refused: list[float] = []
    source = iter(texts)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(clients):
        pool.put_nowait(await Connection.open(port))

    async def replace(connection: Connection) -> None:
        connection.close()
        pool.put_nowait(await Connection.open(port))

    async def one() -> None:
        started = time.perf_counter()
        connection: Connection | None = None
        try:
            async with asyncio.timeout(deadline_s):
                connection = await pool.get()
                status = await _post(connection, next(source), deadline_s)
        except TimeoutError:
            outcomes["client timeout"] += 1
            if connection is not None:
                await replace(connection)
            return
        took = time.perf_counter() - started
        pool.put_nowait(connection)
        if status == 200:
            good.append(took)
        elif status == 429:
            refused.append(took)
        outcomes[str(status)] += 1

    await open_loop(one, rate, seconds)
    while not pool.empty():
        pool.get_nowait().close()
    return outcomes, good, refused


class CpuSplit:
    """Cores used by each part of the stack between two readings: the worker (all its
    processes), Redis, the gateway and this load generator. On a 2-core box they share the
    cores, so the edge's cost is CPU the worker no longer has."""

    def __init__(self, stack: WorkerStack, gateway: Gateway) -> None:
        self.parts = {"worker": stack.cpu_seconds,
                      "redis": _redis_cpu(redis.Redis.from_url(stack.redis.url)),
                      "gateway": _cpu_of(psutil.Process(gateway.process.pid)),
                      "client": time.process_time}
        self._at, self._seen = time.perf_counter(), self._read()

    def _read(self) -> dict[str, float]:
        return {name: read() for name, read in self.parts.items()}

    def since(self) -> tuple[dict[str, float], float]:
        """CPU-seconds of each part since the last call, and the seconds that passed."""
        now, seen = time.perf_counter(), self._read()
        used = {name: seen[name] - self._seen[name] for name in seen}
        elapsed, self._at, self._seen = now - self._at, now, seen
        return used, elapsed


def _cores(used: dict[str, float], elapsed: float) -> dict[str, float]:
    return {name: round(seconds / elapsed, 2) for name, seconds in used.items()}


def _batches(stack: WorkerStack, since_line: int) -> str:
    """The worker's batches since ``since_line`` of its log: how many, their mean size, and the
    model's milliseconds per text (a spike that shrinks the batches or preempts the forward
    passes shows here, apart from the edge's CPU)."""
    batches = stack.batches(since_line)
    texts = sum(t for t, _ in batches)
    if not texts:
        return "no batches"
    return (f"{len(batches)} batches, mean {texts / len(batches):.1f} texts, model "
            f"{sum(s for _, s in batches) / texts * 1e3:.2f} ms per text")


def _cpu_of(process: psutil.Process) -> Callable[[], float]:
    return lambda: sum(process.cpu_times()[:2])


def _redis_cpu(client: redis.Redis) -> Callable[[], float]:
    def read() -> float:
        cpu = client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--headroom", type=float, default=None,
                        help="EMBEDQ_GATEWAY_SHED_HEADROOM for the gateway (default: its own)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the load generator's event loop: uvloop (default) spent a fifth less "
                        "CPU per request than asyncio's own (74 against 94 us), CPU that on one "
                        "host is taken from the worker under test")
    args = parser.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    texts = short_sentences(data_dir(args.data), 200_000)
    stack = WorkerStack("minilm", "fp32", 2, "prefork",
                        {"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false",
           "EMBEDQ_REDIS_URL": stack.redis.url, "EMBEDQ_LOG_FORMAT": "json",
           **({} if args.headroom is None
              else {"EMBEDQ_GATEWAY_SHED_HEADROOM": str(args.headroom)})}
    gateway = Gateway(env, None)
    try:
        run(closed_loop(gateway.port, texts[:64], 4))  # the model in both processes
        split = CpuSplit(stack, gateway)
        capacities = {}
        for clients in (64, 256):
            first = stack.log_lines()
            capacities[clients] = run(closed_loop(gateway.port, texts[64:4064], clients))
            print(f"{clients} closed-loop clients: {capacities[clients]:.1f} texts/s; cores "
                  f"used: {_cores(*split.since())}; {_batches(stack, first)}", flush=True)
        capacity = max(capacities.values())  # the more that fill the batches
        print(f"gateway capacity (the better of 64 and 256 closed-loop clients): "
              f"{capacity:.1f} texts/s", flush=True)
        split.since()  # the spike's reading starts here
        first = stack.log_lines()
        outcomes, good, refused = run(spike(
            gateway.port, texts[4064:], capacity * args.factor, args.seconds, args.deadline,
            args.clients))
        used, elapsed = split.since()
        print(f"spike: cores used: {_cores(used, elapsed)}; {_batches(stack, first)}",
              flush=True)
    finally:
        gateway.stop()
        stack.stop()
    figures = {
        "capacity_texts_per_s": round(capacity, 1), "factor": args.factor,
        "offered_per_s": round(capacity * args.factor, 1), "seconds": args.seconds,
        "outcomes": dict(outcomes), "goodput_per_s": round(len(good) / args.seconds, 1),
        "goodput_x_capacity": round(len(good) / args.seconds / capacity, 3),
        "ok_p50_ms": round(float(np.percentile(good, 50)) * 1e3, 1) if good else None,
        "ok_p99_ms": round(float(np.percentile(good, 99)) * 1e3, 1) if good else None,
        "429_p50_ms": round(float(np.percentile(refused, 50)) * 1e3, 1) if refused else None,
        "429_p99_ms": round(float(np.percentile(refused, 99)) * 1e3, 1) if refused else None,
        # CPU per request offered during the spike (all outcomes): what the edge costs
        "gateway_cpu_us_per_request": round(used["gateway"] / sum(outcomes.values()) * 1e6),
        "client_cpu_us_per_request": round(used["client"] / sum(outcomes.values()) * 1e6),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
