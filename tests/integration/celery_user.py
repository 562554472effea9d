"""Helpers for the Celery-native tests: the example user app, loaded fresh per serializer, and
its own plain Celery worker process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from tests.support import WorkerProcess, wait_until, worker_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "celery_user_app.py"


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_user_app(redis_url: str, serializer: str, config: Path | None) -> ModuleType:
    """The example module as a user's process runs it (its own app, ``serializer``)."""
    from embedq.config.registry import load_registry
    from embedq.tasks.embed_task import use_routes

    use_routes(load_registry(config))
    with _environment(EMBEDQ_REDIS_URL=redis_url, USER_SERIALIZER=serializer):
        spec = importlib.util.spec_from_file_location(f"celery_user_app_{serializer}", EXAMPLE)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    module.app.set_current()
    return module


def start_user_worker(redis_url: str, serializer: str, config: Path | None,
                      module: ModuleType) -> WorkerProcess:
    """``celery -A examples.celery_user_app worker`` on the default queue, once it answers."""
    name = f"user-{serializer}@test"
    env = worker_env(redis_url, config, USER_SERIALIZER=serializer)
    worker = WorkerProcess(
        [sys.executable, "-m", "celery", "--workdir", str(ROOT), "-A",
         "examples.celery_user_app", "worker", "-P", "solo", "-n", name, "--without-gossip",
         "--without-mingle", "--without-heartbeat", "-l", "INFO"], env)

    def answers() -> bool:
        if worker.process.poll() is not None:
            raise AssertionError("the user's worker exited:\n" + worker.stop())
        return any(name in reply for reply in module.app.control.ping(timeout=0.5))

    wait_until(answers, timeout=60, every=0.2)
    return worker
