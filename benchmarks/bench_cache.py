"""Benchmark of the two-tier vector cache (issue 4); run on demand, not in the test suite.

    python benchmarks/bench_cache.py [--json out.json] [--requests 50000] [--distinct 20000]

Measures, in one run and against private redis-servers only:
1. the cached value format: zstd vs lz4 (whole value, or the high byte plane only) on real
   MiniLM vectors of STS-B sentences when the model and data are here (random unit vectors
   otherwise, and it says so);
2. a Zipf (s=1.0) stream over distinct texts with the memory tier sized to 10 % of them:
   memory-tier hit rate of W-TinyLFU against a plain LRU of the same bytes (and theine, which
   bounds entries by count, at the same entry count), and the two-tier overall hit rate;
3. producer-side hit latency (one MGET read-through) for 1 and 100 texts, p50/p95;
4. Redis memory per cached 384-d vector including key overhead (INFO memory and MEMORY USAGE),
   for each redis-server binary found, and memory-tier bytes per vector (tracemalloc).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import tempfile
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lz4.block
import msgpack
import numpy as np
import redis
import zstandard

from embedq.config.registry import Precision, load_registry
from embedq.config.settings import Settings
from embedq.ops.redis_server import RedisServer, find_redis_server
from embedq.producer.client import EmbeddingClient
from embedq.tasks.cache_codec import CachedVector, as_stored, decode_entry, encode_entry
from embedq.tasks.schema import EmbedRequest
from embedq.worker.cache_memory import MemoryCache, entry_weight
from embedq.worker.cache_redis import RedisCache
from embedq.worker.cache_tiered import TieredCache, process_cache
from embedq.worker.loaded_models import LoadedModels
from embedq.worker.service import EmbedService

DIM = 384
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsb_dev.csv"
KEY_PREFIX = "embedq:v1:vec:minilm:0123456789abcdef:"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sample_vectors(count: int = 500) -> tuple[np.ndarray, str]:
    """Real MiniLM vectors of STS-B sentences if available, else random unit vectors."""
    try:
        with DATA.open(encoding="utf-8") as handle:
            texts = [row["sentence1"] for row in csv.DictReader(handle)][:count]
        registry = load_registry()
        embedder = LoadedModels(registry, Settings()).get("minilm", Precision.FP32)
        raw = embedder.encode(texts).vectors
        return raw / np.linalg.norm(raw, axis=1, keepdims=True), "MiniLM on STS-B dev sentences"
    except Exception as exc:  # a benchmark on a producer-only host still measures the codec
        return _unit_vectors(count), f"random unit vectors ({exc!r})"


def _timed(fn: Callable[[Any], Any], items: list[Any]) -> tuple[list[Any], float]:
    """Results of ``fn`` on every item, and the µs per item."""
    started = time.perf_counter()
    out = [fn(item) for item in items]
    return out, (time.perf_counter() - started) / len(items) * 1e6


def codec_choice(vectors: np.ndarray) -> dict[str, Any]:
    """Bytes and µs per value for each candidate way to compress a float16 vector."""
    halves = [v.astype("<f2").tobytes() for v in vectors]
    envelopes = [msgpack.packb(["<f2", [DIM], h, 20, False]) for h in halves]
    highs = [h[1::2] for h in halves]
    zc, zd = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
    rest = DIM + 20  # the raw low byte plane and the envelope stay beside a compressed plane
    candidates: dict[str, tuple[list[bytes], Callable[[Any], Any], Callable[[Any], Any], int]] = {
        "none (msgpack envelope only)": (envelopes, bytes, bytes, 0),
        "zstd, whole value": (envelopes, zc.compress, zd.decompress, 0),
        "lz4, whole value": (envelopes, lz4.block.compress, lz4.block.decompress, 0),
        "zstd, high byte plane only": (highs, zc.compress, zd.decompress, rest),
        "lz4, high byte plane only": (highs, lz4.block.compress, lz4.block.decompress, rest),
    }
    rows: dict[str, Any] = {}
    for name, (inputs, compress, decompress, extra) in candidates.items():
        packed, encode_us = _timed(compress, inputs)
        _, decode_us = _timed(decompress, packed)
        rows[name] = {"bytes": round(statistics.mean(len(p) for p in packed) + extra, 1),
                      "encode_us": round(encode_us, 2), "decode_us": round(decode_us, 2)}
    entries = [as_stored(CachedVector(v, 20, False), "float16") for v in vectors]
    blobs, encode_us = _timed(encode_entry, entries)
    _, decode_us = _timed(lambda blob: decode_entry(blob, DIM), blobs)
    rows["embedq v1 value (chosen)"] = {"bytes": round(statistics.mean(map(len, blobs)), 1),
                                        "encode_us": round(encode_us, 2),
                                        "decode_us": round(decode_us, 2)}
    return rows


def zipf_stream(requests: int, distinct: int, seed: int = 1) -> np.ndarray:
    """Text ids drawn with probability proportional to 1 / rank (s = 1.0)."""
    weights = 1.0 / np.arange(1, distinct + 1)
    return np.random.default_rng(seed).choice(distinct, size=requests, p=weights / weights.sum())


def memory_policies(stream: np.ndarray, keys: list[str], entry: CachedVector) -> dict[str, Any]:
    """Memory-tier hit rate on the stream: W-TinyLFU vs LRU (same bytes) vs theine (count)."""
    import theine

    capacity = max(1, len(keys) // 10)
    bound = capacity * entry_weight(keys[0], entry)
    ours = MemoryCache(bound)
    lru: OrderedDict[str, int] = OrderedDict()
    lru_bytes = lru_hits = theine_hits = 0
    other: Any = theine.Cache(capacity)
    for index in stream:
        key = keys[index]
        if ours.get_many([key], [DIM])[0] is None:
            ours.set_many({key: entry})
        if key in lru:
            lru.move_to_end(key)
            lru_hits += 1
        else:
            lru[key] = entry_weight(key, entry)
            lru_bytes += lru[key]
            while lru_bytes > bound:
                lru_bytes -= lru.popitem(last=False)[1]
        if other.get(key)[1]:
            theine_hits += 1
        else:
            other.set(key, entry)
    stats = ours.stats()
    return {"capacity_vectors": capacity, "capacity_bytes": bound,
            "wtinylfu_hit_rate": round(stats.hit_rate, 4),
            "lru_hit_rate": round(lru_hits / len(stream), 4),
            "theine_count_bound_hit_rate": round(theine_hits / len(stream), 4),
            "wtinylfu_max_bytes_seen_ok": stats.bytes <= bound}


def two_tier(stream: np.ndarray, keys: list[str], vectors: np.ndarray, url: str) -> dict[str, Any]:
    """Overall hit rate of memory (10 %) + Redis on the stream, one text per request."""
    settings = Settings(redis_url=url, cache_memory_bytes=1)
    capacity = max(1, len(keys) // 10)
    entry = as_stored(CachedVector(vectors[0], 20, False), "float16")
    memory = MemoryCache(capacity * entry_weight(keys[0], entry))
    cache = TieredCache(memory, RedisCache.from_settings(settings), storage_dtype="float16")
    hits = 0
    for index in stream:
        key = keys[index]
        if cache.get_many([key], [DIM])[0] is not None:
            hits += 1
        else:
            cache.set_many({key: CachedVector(vectors[index], 20, False)})
    tiers = cache.stats()
    cache.close()
    return {"overall_hit_rate": round(hits / len(stream), 4),
            "memory_hit_rate": round(tiers["memory"].hits / len(stream), 4),
            "redis_hit_rate": round(tiers["redis"].hits / len(stream), 4),
            "best_possible_hit_rate": round(1 - len(set(stream.tolist())) / len(stream), 4)}


def redis_bytes_per_vector(binary: str, vectors: np.ndarray) -> dict[str, Any]:
    """used_memory growth per key and MEMORY USAGE, writing vectors as the worker does."""
    with RedisServer(binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        tier = RedisCache.from_settings(Settings(redis_url=server.url))
        before = client.info("memory")["used_memory"]
        keys = [f"{KEY_PREFIX}{i:032x}" for i in range(len(vectors))]
        for start in range(0, len(keys), 1000):
            tier.set_many({keys[i]: as_stored(CachedVector(vectors[i], 20, False), "float16")
                           for i in range(start, min(start + 1000, len(keys)))})
        grown = client.info("memory")["used_memory"] - before
        usage = [client.memory_usage(key) or 0 for key in keys[:1000]]
        server_info = {**client.info("server"), **client.info("memory")}
        tier.close()
        client.close()
    return {"binary": binary, "redis_version": server_info.get("redis_version"),
            "allocator": server_info.get("mem_allocator"), "key_length": len(keys[0]),
            "used_memory_per_vector": round(grown / len(keys), 1),
            "memory_usage_per_key": round(statistics.mean(usage), 1)}


def memory_tier_bytes(vectors: np.ndarray) -> dict[str, Any]:
    """What one decoded entry really costs in a worker process vs what the tier accounts."""
    blobs = [encode_entry(as_stored(CachedVector(v, 20, False), "float16")) for v in vectors]
    cache = MemoryCache(len(blobs) * 4096)  # room for all: this measures entries, not eviction
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keys = [f"{KEY_PREFIX}{i:032x}" for i in range(len(blobs))]  # traced: keys cost memory too
    cache.set_many({key: decode_entry(blob, DIM) for key, blob in zip(keys, blobs, strict=True)})
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stats = cache.stats()
    return {"traced_bytes_per_vector": round(traced / len(keys), 1),
            "accounted_bytes_per_vector": round(stats.bytes / stats.entries, 1),
            "vector_data_bytes": DIM * 2}


def _bench_config(folder: Path) -> Path:
    (folder / "models.json").write_text(json.dumps({"version": 1, "models": {"hashing": {
        "source": {"kind": "hashing"}, "dim": DIM, "max_tokens": 256, "precisions": ["fp32"]}}}))
    (folder / "routes.json").write_text(json.dumps(
        {"version": 1, "default": "bench", "routes": {"bench": {"model": "hashing"}}}))
    return folder


def producer_latency(url: str, config: Path, rounds: int) -> dict[str, Any]:
    """p50/p95 of `EmbeddingClient.embed` when every text is a Redis hit (no worker runs)."""
    settings = Settings(redis_url=url, config_dir=config)
    registry = load_registry(config)
    texts = [f"cached product title number {i}" for i in range(1000)]
    pool = LoadedModels(registry, settings)
    service = EmbedService(registry, settings, pool, process_cache(settings))
    request = EmbedRequest(texts=texts, route="bench", model="hashing", precision="fp32",
                           dim=DIM, normalize=True, output_dtype="float32")
    service.handle([request])  # what a worker does: compute, write back, publish model facts
    client = EmbeddingClient(settings, registry)
    out: dict[str, Any] = {}
    for size in (1, 100):
        timings = []
        for i in range(rounds):
            batch = [texts[(i * size + j) % len(texts)] for j in range(size)]
            started = time.perf_counter()
            job = client.submit(batch, "bench")
            job.get(timeout=5)
            timings.append((time.perf_counter() - started) * 1e3)
            assert not job.ids, "a cached text went to the queue"
        out[f"{size}_text"] = {"p50_ms": round(_pct(timings, 50), 3),
                               "p95_ms": round(_pct(timings, 95), 3)}
    if client.read_through is not None:
        client.read_through.close()
    return out


def _binaries() -> list[str]:
    found = [find_redis_server()]
    for other in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if other and os.path.realpath(other) not in map(os.path.realpath, found):
            found.append(other)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--distinct", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1000, help="Latency samples per size.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    real, source = sample_vectors()
    report: dict[str, Any] = {"vectors": source, "codec": codec_choice(real)}
    stream = zipf_stream(args.requests, args.distinct)
    keys = [f"{KEY_PREFIX}{i:032x}" for i in range(args.distinct)]
    vectors = _unit_vectors(args.distinct, seed=2)
    entry = as_stored(CachedVector(vectors[0], 20, False), "float16")
    report["memory_tier"] = memory_policies(stream, keys, entry)
    with RedisServer() as server:
        report["two_tier"] = two_tier(stream, keys, vectors, server.url)
    with RedisServer() as server, tempfile.TemporaryDirectory() as folder:
        report["producer_hit_latency"] = producer_latency(server.url, _bench_config(Path(folder)),
                                                          args.rounds)
    report["redis_memory"] = [redis_bytes_per_vector(b, vectors) for b in _binaries()]
    report["memory_tier_bytes"] = memory_tier_bytes(vectors[:5000])
    _print(report, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _print(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"codec on {report['vectors']} (float16, {DIM}-d):")
    print(f"  {'candidate':32s} {'bytes':>7s} {'enc µs':>7s} {'dec µs':>7s}")
    for name, row in report["codec"].items():
        print(f"  {name:32s} {row['bytes']:7.1f} {row['encode_us']:7.2f} {row['decode_us']:7.2f}")
    mem, two = report["memory_tier"], report["two_tier"]
    print(f"\nZipf s=1.0, {args.requests:,} requests over {args.distinct:,} texts, memory tier "
          f"{mem['capacity_vectors']:,} vectors ({mem['capacity_bytes']:,} B):")
    for label, value in [
        ("memory tier W-TinyLFU hit rate", mem["wtinylfu_hit_rate"]),
        ("memory tier plain LRU hit rate (same bytes)", mem["lru_hit_rate"]),
        ("theine 2.x (count-bounded) hit rate", mem["theine_count_bound_hit_rate"]),
        ("two-tier overall hit rate", two["overall_hit_rate"]),
        ("  of which memory / Redis", f"{two['memory_hit_rate']} / {two['redis_hit_rate']}"),
        ("best possible (cold start, infinite cache)", two["best_possible_hit_rate"]),
    ]:
        print(f"  {label:46s} {value}")
    print("\nproducer hit latency (read-through, one MGET):")
    for size, row in report["producer_hit_latency"].items():
        print(f"  {size:10s} p50 {row['p50_ms']:.3f} ms   p95 {row['p95_ms']:.3f} ms")
    print("\nRedis memory per cached 384-d float16 vector (incl. key overhead):")
    for row in report["redis_memory"]:
        print(f"  redis {row['redis_version']} ({row['allocator']}): used_memory "
              f"{row['used_memory_per_vector']} B/vector, MEMORY USAGE "
              f"{row['memory_usage_per_key']} B/key (key {row['key_length']} chars)")
    tier = report["memory_tier_bytes"]
    print(f"\nmemory tier per vector: {tier['traced_bytes_per_vector']} B traced, "
          f"{tier['accounted_bytes_per_vector']} B accounted ({tier['vector_data_bytes']} B data)")
    print("\n" + json.dumps(report))


if __name__ == "__main__":
    main()
