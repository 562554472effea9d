"""The HTTP gateway under a spike (issue 19): ``python benchmarks/bench_gateway_overload.py``.

One minilm fp32 worker (prefork, 2 processes, cache off) and one ``embedq gateway`` process
(``EMBEDQ_GATEWAY_TIMEOUT_S`` = the clients' deadline). The gateway's capacity is measured the
way the storm of ``bench_gateway.py`` measures it, with many closed-loop clients; then requests
of one short text are offered open-loop at ``--factor`` x that capacity for ``--seconds``, each
with a client deadline (the client gives up and closes its connection at the deadline, which
cancels its texts in the gateway). Counted per request: 200 within the deadline (goodput), 429
(and how fast it came), timeouts, anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from bench_gateway import Gateway, short_sentences, storm
from shared_data import data_dir

from embedq.ops.bench_stack import WorkerStack


async def _request(port: int, text: str) -> tuple[int, float]:
    """One request on its own connection; (status, seconds)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        body = json.dumps({"input": text, "model": "search"}).encode()
        writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.read()
        return int(head.split(b" ", 2)[1]), time.perf_counter() - started
    finally:
        writer.close()


async def spike(port: int, texts: list[str], rate: float, seconds: float,
                deadline_s: float) -> tuple[Counter[str], list[float], list[float]]:
    """Open-loop requests at ``rate``/s; outcome counts, good latencies, 429 latencies."""
    outcomes: Counter[str] = Counter()
    good: list[float] = []
    refused: list[float] = []
    source = iter(texts)

    async def one() -> None:
        try:
            status, took = await asyncio.wait_for(_request(port, next(source)), deadline_s)
        except TimeoutError:
            outcomes["client timeout"] += 1
            return
        except OSError as exc:
            outcomes[type(exc).__name__] += 1
            return
        if status == 200:
            good.append(took)
        elif status == 429:
            refused.append(took)
        outcomes[str(status)] += 1

    tasks = []
    started = time.perf_counter()
    sent = 0
    while (now := time.perf_counter() - started) < seconds:
        due = int(now * rate) - sent
        tasks += [asyncio.ensure_future(one()) for _ in range(due)]
        sent += due
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    return outcomes, good, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    texts = short_sentences(data_dir(args.data), 200_000)
    stack = WorkerStack("minilm", "fp32", 2, "prefork",
                        {"HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBEDQ_CACHE_ENABLED": "false",
           "EMBEDQ_REDIS_URL": stack.redis.url, "EMBEDQ_LOG_FORMAT": "json",
           "EMBEDQ_GATEWAY_TIMEOUT_S": str(args.deadline)}
    gateway = Gateway(env, None)
    try:
        asyncio.run(storm(gateway.port, texts[:64], 4))  # the model in both pool processes
        seconds, _ = asyncio.run(storm(gateway.port, texts[64:4064], args.clients))
        capacity = 4000 / seconds
        print(f"gateway capacity ({args.clients} closed-loop clients): {capacity:.1f} texts/s",
              flush=True)
        outcomes, good, refused = asyncio.run(spike(
            gateway.port, texts[4064:], capacity * args.factor, args.seconds, args.deadline))
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
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
