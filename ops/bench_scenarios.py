"""The ways producers call embedq, each as a function that runs one scenario to the end.

A scenario gets a client and the texts, sends every text, checks that every text came back as one
vector, and returns the per-call latencies in seconds (empty where a call is not one text, as in
bulk). They are what web apps and pipelines do: one request at a time, many threads sharing one
client, several producer processes (gunicorn workers), asyncio, an open loop of ``submit`` then
``get``, and ``embed_many``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Event

import numpy as np

from embedq.config.settings import Settings
from embedq.producer.client import EmbeddingClient

NAMES = ("sequential", "threads", "processes", "asyncio", "open-loop", "bulk")
_TIMEOUT_S = 300.0


def _one_vector(vectors: np.ndarray, text: str) -> None:
    if vectors.shape[0] != 1 or not np.isfinite(vectors).all():
        raise RuntimeError(f"expected one finite vector for {text!r}, got {vectors.shape}")


def _timed_call(client: EmbeddingClient, text: str, route: str) -> float:
    started = time.perf_counter()
    _one_vector(client.embed([text], route, timeout=_TIMEOUT_S), text)
    return time.perf_counter() - started


def sequential(client: EmbeddingClient, texts: list[str], route: str) -> list[float]:
    """One ``embed([text])`` at a time: the latency of a lone web request."""
    return [_timed_call(client, text, route) for text in texts]


def threaded(client: EmbeddingClient, texts: list[str], route: str,
             threads: int = 16) -> list[float]:
    """``threads`` request threads sharing one client, each calling ``embed([text])``."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda text: _timed_call(client, text, route), texts))


def concurrent_aembed(client: EmbeddingClient, texts: list[str], route: str) -> list[float]:
    """Every text as its own ``await client.aembed([text])``, all at once on one event loop."""

    async def one(text: str) -> float:
        started = time.perf_counter()
        _one_vector(await client.aembed([text], route, timeout=_TIMEOUT_S), text)
        return time.perf_counter() - started

    async def every() -> list[float]:
        return list(await asyncio.gather(*(one(text) for text in texts)))

    return asyncio.run(every())


def open_loop(client: EmbeddingClient, texts: list[str], route: str) -> list[float]:
    """``submit([text])`` for every text without waiting, then ``get`` them all; a latency is
    from a text's submit to its result being read."""
    submitted = [(time.perf_counter(), client.submit([text], route)) for text in texts]
    latencies = []
    for (started, job), text in zip(submitted, texts, strict=True):
        _one_vector(job.get(_TIMEOUT_S), text)
        latencies.append(time.perf_counter() - started)
    return latencies


def bulk(client: EmbeddingClient, texts: list[str], route: str) -> list[float]:
    """``embed_many`` over all texts (the producer's default chunking and window)."""
    total = sum(len(block) for block in client.embed_many(texts, route, progress=False,
                                                         timeout=_TIMEOUT_S))
    if total != len(texts):
        raise RuntimeError(f"embed_many returned {total} vectors for {len(texts)} texts")
    return []


def _producer_process(settings: Settings, texts: list[str], route: str, threads: int,
                      ready: multiprocessing.Queue[bool], go: Event,
                      results: multiprocessing.Queue[list[float]]) -> None:
    """One web-server process: its own client, warmed up, then ``threads`` request threads."""
    with EmbeddingClient(settings) as client:
        client.embed([texts[0]], route, timeout=_TIMEOUT_S)  # connected and listening
        ready.put(True)
        go.wait()
        results.put(threaded(client, texts, route, threads))


def many_processes(settings: Settings, texts: list[str], route: str, processes: int = 4,
                   threads: int = 4) -> tuple[float, list[float]]:
    """``processes`` producer processes x ``threads`` threads, started together; returns the
    seconds from the start signal to the last reply, and every call's latency."""
    context = multiprocessing.get_context("spawn")  # a web server's workers share nothing
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    shares = [texts[index::processes] for index in range(processes)]
    children = [context.Process(target=_producer_process,
                                args=(settings, share, route, threads, ready, go, results))
                for share in shares]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=_TIMEOUT_S)
        started = time.perf_counter()
        go.set()
        latencies = [value for _ in children for value in results.get(timeout=_TIMEOUT_S)]
        seconds = time.perf_counter() - started
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    return seconds, latencies
