"""What a benchmark stands on: the raw model it is compared with, and a private queue stack.

Absolute speeds on shared machines are noisy, so every queue figure is a ratio to the raw
in-process ``encode`` measured in the same run, on the same texts. The stack is private (a
redis-server on a free port and one real ``embedq worker`` process whose JSON log goes to a
file), so a bench never touches a Redis the user runs, and it is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import psutil
import redis

from embedq.config.registry import Precision, Registry, load_registry
from embedq.config.settings import Settings, load_settings
from embedq.config.sources import HashingSource
from embedq.ops.processes import stop_processes
from embedq.ops.redis_server import RedisServer
from embedq.ops.redis_tls import TlsRedisServer, make_certificates
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
    mean_batch_texts: float | None = None
    cpu_utilisation: float | None = None
    # Per request, so they hold on any CPU: Redis commands (INFO commandstats), the producer's
    # CPU (this process and producer processes that ended), the worker's CPU outside its model
    # runs (its processes' CPU time less the time of its batches' model runs).
    redis_commands: float | None = None
    producer_cpu_us: float | None = None
    worker_cpu_us: float | None = None
    note: str = ""


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99 of latencies given in seconds, in milliseconds."""
    values = np.asarray(seconds) * 1e3
    return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 95, 99)}


class RawModel:
    """Plain sentence-transformers ``encode`` with all cores, in this process: the baseline."""

    what = "SentenceTransformer.encode fp32"

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
        return Figure(f"raw batch {batch_size}{label}", len(texts), seconds,
                      len(texts) / seconds)

    def single(self, texts: list[str], label: str) -> Figure:
        """One text per ``encode`` call: the latency floor of a lone request."""
        self.model.encode(texts[:8], batch_size=1)
        latencies = []
        started = time.perf_counter()
        for text in texts:
            began = time.perf_counter()
            self.model.encode([text], batch_size=1)
            latencies.append(time.perf_counter() - began)
        seconds = time.perf_counter() - started
        return Figure(f"raw one text a call{label}", len(texts), seconds,
                      len(texts) / seconds, latency_ms=percentiles(latencies))


class RawHashing(RawModel):
    """The deterministic hashing model in this process: the baseline of a queue-only bench.

    Its "model" costs microseconds, so what a hashing-model run measures is the queue itself:
    the per-request CPU of each side and the Redis commands, not a ratio worth reading."""

    what = "the hashing encoder in this process"

    def __init__(self, registry: Registry, model: str) -> None:  # no torch: no super()
        from embedq.worker.models.loading import load_encoder

        encoder = load_encoder(registry, model, Precision.FP32)
        self.model = _EncodeAdapter(encoder.encode_batch)  # type: ignore[assignment]  # duck


@dataclass(frozen=True)
class _EncodeAdapter:
    """``encode(texts, batch_size=n)`` over an embedq encoder's ``encode_batch``."""

    encode_batch: Callable[[list[str]], np.ndarray]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return np.concatenate([self.encode_batch(texts[start:start + batch_size])
                               for start in range(0, len(texts), batch_size)])


def raw_model(registry: Registry, model: str, model_cache_dir: Path) -> RawModel:
    """The baseline for ``model``: sentence-transformers fp32, or the hashing model itself."""
    spec = registry.model(model)
    if isinstance(spec.source, HashingSource):
        return RawHashing(registry, model)
    from embedq.worker.models.sources import resolve_source

    return RawModel(resolve_source(spec, model_cache_dir).location)


def bench_config(folder: Path, model: str, precision: str) -> Path:
    """A config folder whose one route, ``bench``, is served by ``model`` at ``precision``
    (the models are those of the config in effect)."""
    registry_dir = load_settings().config_dir
    models = (registry_dir / "models.json" if registry_dir else
              Path(str(resources.files("embedq.config").joinpath("models.json"))))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models, folder / "models.json")
    (folder / "routes.json").write_text(json.dumps({
        "version": 1, "default": "bench",
        "routes": {"bench": {"model": model, "precision": precision, "normalize": True}}}))
    load_registry(folder)  # refuses an unknown model or precision here, with the reason
    return folder


class WorkerStack:
    """A private redis-server and one ``embedq worker`` process whose log goes to a file."""

    def __init__(self, model: str, precision: str, concurrency: int | None, pool: str,
                 env: dict[str, str], config_dir: Path | None = None, *,
                 tls: bool = False) -> None:
        self.config_dir = config_dir
        self._pki = tempfile.TemporaryDirectory(prefix="embedq-bench-pki-") if tls else None
        self.redis = (TlsRedisServer(make_certificates(Path(self._pki.name)))
                      if self._pki is not None else RedisServer()).start()
        self.log = Path(tempfile.mkstemp(prefix="embedq-bench-", suffix=".log")[1])
        self._command = [sys.executable, "-m", "embedq.cli", "worker", "-m", model,
                         "-p", precision, "-P", pool]
        if concurrency:
            self._command += ["-c", str(concurrency)]
        self._env = {**os.environ, **env, "EMBEDQ_REDIS_URL": self.redis.url,
                     "EMBEDQ_LOG_FORMAT": "json"}
        if config_dir is not None:
            self._env["EMBEDQ_CONFIG_DIR"] = str(config_dir)
        self.process = self._start(self._env)
        self.settings = Settings(redis_url=self.redis.url, config_dir=config_dir)

    def _start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(self._command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def restart(self, env: dict[str, str]) -> None:
        """Stop the worker (warm shutdown) and start it again with ``env`` added."""
        stop_processes([self.process], grace_s=60)
        self.process = self._start({**self._env, **env})

    def client(self, **settings: object) -> EmbeddingClient:
        """A producer for this stack (``settings`` override the stack's defaults)."""
        chosen = Settings(redis_url=self.redis.url, config_dir=self.config_dir,
                          **settings)  # type: ignore[arg-type]
        return EmbeddingClient(chosen, load_registry(chosen.config_dir))

    def cpu_seconds(self) -> float:
        """CPU time of the worker and its pool processes so far."""
        proc = psutil.Process(self.process.pid)
        total = 0.0
        for each in [proc, *proc.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
        return total

    def settle(self, idle_share: float = 0.05, limit_s: float = 120.0) -> None:
        """Wait until the worker's processes are idle (a pool process still loading its model
        would take CPU from whatever is measured next)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(0.5)
            if self.cpu_seconds() - before < idle_share * 0.5 * (os.cpu_count() or 1):
                return

    def batch_sizes(self, since_line: int) -> list[int]:
        """Texts per model batch, from the worker's JSON log lines after ``since_line``."""
        return [texts for texts, _ in self.batches(since_line)]

    def batches(self, since_line: int) -> list[tuple[int, float]]:
        """(texts, seconds in the model) per batch, from the worker's log after ``since_line``."""
        lines = self.log.read_text(errors="replace").splitlines()[since_line:]
        rows = [json.loads(line) for line in lines if '"batch_embedded"' in line]
        return [(row["batch_texts"], row["latency_ms"] / 1e3) for row in rows]

    def redis_commands(self) -> int:
        """Commands the stack's Redis has run so far (every client, every kind)."""
        with redis.Redis.from_url(self.redis.url) as client:
            stats = client.info("commandstats")
        return sum(int(entry["calls"]) for entry in stats.values())

    def log_lines(self) -> int:
        """How many lines the worker has logged."""
        return len(self.log.read_text(errors="replace").splitlines())

    def stop(self) -> None:
        """Warm-shutdown the worker, then stop Redis."""
        stop_processes([self.process], grace_s=60)
        self.redis.stop()
        if self._pki is not None:
            self._pki.cleanup()
