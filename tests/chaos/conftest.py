"""Fault injection with real faults: kill -9, Redis shut down and restarted, garbage on queues.

Every case counts what it sent, what came back correct and what was lost, and prints one line
"N requests, N answered correctly, 0 lost, worker alive" in the terminal summary. CI runs a quick
subset (fewer kills and restarts); ``EMBEDQ_CHAOS=full`` runs the counts the faults issue asks for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from embedq.ops.redis_server import RedisServer
from tests.support import HASHING_MODEL, WorkerProcess, worker_env, write_config

FULL = os.environ.get("EMBEDQ_CHAOS") == "full"
_REPORT: list[str] = []


def scale(quick: int, full: int) -> int:
    """A count for this run: the CI subset or the full chaos run."""
    return full if FULL else quick


def report(case: str, sent: int, correct: int, worker_alive: bool, extra: str = "") -> None:
    """Record one case's counts for the summary (and fail unless nothing was lost)."""
    lost = sent - correct
    alive = "worker alive" if worker_alive else "WORKER DEAD"
    line = f"{case}: {sent} requests, {correct} answered correctly, {lost} lost, {alive}"
    _REPORT.append(line + (f" ({extra})" if extra else ""))
    assert lost == 0, line
    assert worker_alive, line


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT:
        terminalreporter.section("chaos counts" + (" (full run)" if FULL else " (quick subset)"))
        for line in _REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hashing model whose forward pass takes as long as a real one's on a batch of short
    texts, so a bulk job lasts long enough for every fault to land mid-batch."""
    slow = {**HASHING_MODEL, "source": {"kind": "hashing", "delay_ms": 150}}
    return write_config(tmp_path_factory.mktemp("slow-config"), {"slow": slow},
                        {"slow": {"model": "slow", "precision": "fp32"}}, default="slow")


def worker_command(model: str, *args: str) -> list[str]:
    """``embedq worker`` for one model at fp32."""
    return [sys.executable, "-m", "embedq.cli", "worker", "-m", model, "-p", "fp32", *args]


def pool_children(worker: WorkerProcess) -> list[psutil.Process]:
    """The pool processes of a running worker."""
    try:
        return psutil.Process(worker.process.pid).children()
    except psutil.NoSuchProcess:
        return []


def kill_hard(worker: WorkerProcess) -> None:
    """SIGKILL a worker and its pool processes at once: a crash, not a shutdown."""
    for child in pool_children(worker):
        child.send_signal(signal.SIGKILL)
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()


class Supervisor:
    """Keeps one worker running, as systemd or a container runtime would: restarts it at once
    whenever it dies, until stopped."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command = command
        self.env = env
        self.starts = 0
        self.current = self._start()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _start(self) -> WorkerProcess:
        self.starts += 1
        return WorkerProcess(self.command, self.env)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                self.current.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            if not self._stopping.is_set():
                self.current = self._start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.current.stop()


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    """A broker of the test's own (AOF on, so it can be restarted): no other test's worker
    consumes its queues."""
    with RedisServer(persist=True) as server:
        yield server


@pytest.fixture
def supervised(broker, slow_config) -> Iterator[Supervisor]:
    supervisor = Supervisor(worker_command("slow", "-c", "2"),
                            worker_env(broker.url, slow_config,
                                       EMBEDQ_CACHE_ENABLED="false",
                                       EMBEDQ_LIVENESS_INTERVAL_S="1"))
    yield supervisor
    supervisor.stop()
