"""Shared fixtures: the test environment, a private redis-server, config folders, workers.

Nothing here talks to the machine's own Redis on 6379 and nothing downloads: the session sets
HF_HUB_OFFLINE=1 for itself and every process it starts, and models load from installed packages.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import signal
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.ops.redis_server import RedisServer, free_port
from embedq.ops.redis_tls import Certificates, make_certificates
from tests.support import (
    HASHING_MODEL,
    Reaper,
    WorkerProcess,
    make_client,
    stop_all,
    wait_for_consumers,
    wait_until,
    worker_env,
    write_config,
)


@pytest.fixture(scope="session", autouse=True)
def model_cache() -> Iterator[Path]:
    """Offline, quiet tokenizers, CPU only, and one model cache for the whole session (assembled
    mpnet, exported int8 models), inherited by every worker process and removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="embedq-test-models-"))
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a non-interactive shell, the run inherits Ctrl-C
        # ignored, and so would every process it starts; the Ctrl-C tests need it delivered.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        patch.setenv("EMBEDQ_MODEL_CACHE_DIR", str(folder))
        # Workers of other tests start without probing; tests/integration/test_precision_auto.py
        # measures the real choices with explicit settings.
        patch.setenv("EMBEDQ_FP32_BACKEND", "torch")
        patch.setenv("EMBEDQ_AUTO_CANDIDATES", '["torch-fp32"]')
        # The same CPU-only view on a GPU host: these tests check the CPU paths (a refused
        # fp16, an int8 export); the CUDA choices are unit-tested as pure logic.
        patch.setenv("CUDA_VISIBLE_DEVICES", "")
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


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


@pytest.fixture(scope="session")
def reaper() -> Iterator[Reaper]:
    """Module teardowns that only wait (processes shutting down, then their Redis), finished
    in the background; the session ends once all of them have."""
    reaping = Reaper()
    yield reaping
    reaping.close()


@pytest.fixture(scope="module")
def redis_server(reaper: Reaper) -> Iterator[RedisServer]:
    """A private redis-server per test module, stopped once the module's processes are gone."""
    with contextlib.ExitStack() as stack:
        yield stack.enter_context(RedisServer())
        # Celery's AsyncResult unsubscribes in __del__; collect them while Redis still answers.
        gc.collect()
        reaper.later(stack.pop_all().close)


@pytest.fixture
def service_maker(redis_server: RedisServer) -> Iterator[object]:
    """Builds in-process `EmbedService`s for a config folder, each with its own two-tier cache on
    the test Redis; the caches are closed and that Redis flushed afterwards."""
    from embedq.worker.cache_tiered import TieredCache
    from embedq.worker.loaded_models import LoadedModels
    from embedq.worker.service import EmbedService

    made: list[TieredCache] = []

    def _make(config_dir: Path, **overrides: object) -> EmbedService:
        settings = Settings(redis_url=redis_server.url, config_dir=config_dir,  # type: ignore[arg-type]
                            **overrides)
        registry = load_registry(config_dir)
        cache = TieredCache.from_settings(settings)
        made.append(cache)
        return EmbedService(registry, settings, LoadedModels(registry, settings), lambda: cache)

    yield _make
    for cache in made:
        cache.close()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()


@pytest.fixture(scope="module")
def start_worker(redis_server: RedisServer, reaper: Reaper) -> Iterator[object]:
    """Start worker processes for the module; all are stopped at its end (waited for in the
    background: they only talk to the module's Redis, which outlives them)."""
    started: list[WorkerProcess] = []

    def _start(model: str, precision: str, config_dir: Path | None, *extra_args: str,
               **env: str) -> WorkerProcess:
        command = [sys.executable, "-m", "embedq.cli", "worker", "-m", model, "-p", precision,
                   *extra_args]
        worker = WorkerProcess(command, worker_env(redis_server.url, config_dir, **env))
        started.append(worker)
        return worker

    yield _start
    reaper.stop(started)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def start_gateway(redis_server: RedisServer, reaper: Reaper) -> Iterator[object]:
    """Start `embedq gateway` processes for the module (settings through the environment, as
    in production); each is returned once it listens, with its base URL. All stop at the end."""
    started: list[WorkerProcess] = []

    def _start(config_dir: Path | None, *extra_args: str,
               **env: str) -> tuple[WorkerProcess, str]:
        port = free_port()
        command = [sys.executable, "-m", "embedq.cli", "gateway", "--port", str(port),
                   *extra_args]
        gateway = WorkerProcess(command, worker_env(redis_server.url, config_dir, **env))
        started.append(gateway)
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health") or
                   gateway.process.poll() is not None, timeout=60, every=0.05)
        if gateway.process.poll() is not None:
            raise RuntimeError("the gateway exited:\n" + gateway.stop())
        return gateway, f"http://127.0.0.1:{port}"

    yield _start
    reaper.stop(started)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A private CA, server and client certificates, and a wrong CA (for TLS-only Redis)."""
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def processes() -> Iterator[list[WorkerProcess]]:
    """Processes a module starts itself (dashboard, Flower, ...); all stopped at its end."""
    started: list[WorkerProcess] = []
    yield started
    stop_all(started)


@pytest.fixture(scope="module")
def hashing_client(redis_server: RedisServer, start_worker: object,
                   hashing_config: Path) -> Iterator[object]:
    """A producer client on the hashing routes, once a hashing worker is ready."""
    start_worker("hashing", "fp32", hashing_config, "-c", "1")  # type: ignore[operator]
    wait_for_consumers(redis_server.url, "embed.hashing.fp32")
    client = make_client(redis_server.url, hashing_config)
    yield client
    client.close()
