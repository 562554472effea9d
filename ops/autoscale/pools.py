"""A queue's pool of worker processes: start one, stop one, notice one that died.

Each member is a whole ``embedq worker -c 1 --threads 1``, so a pool of n is n cores and a
shrink is Celery's warm shutdown of one worker (SIGTERM): the forward pass in progress finishes
and what it completed is answered, the rest of its claimed batch goes back to the head of the
queue at once (`worker.consumer`), so the core is free within about one pass; its claims are
never orphaned, and its model's memory goes back to the host when it exits. (Growing a
single worker's prefork pool would keep the model loaded in one parent, but billiard stops a
pool process with SIGTERM's default action, which would leave its claimed messages to be
restored as a poison suspect's.) Each member serves its own ``/metrics`` on a free loopback
port, which the autoscaler reads for the texts it served.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import structlog

from embedq.ops.dashboard.scrape import scrape
from embedq.ops.processes import stop_processes
from embedq.ops.redis_server import free_port
from embedq.ops.stack import worker_command

log = structlog.get_logger(__name__)


@dataclass
class Member:
    """One worker process of a pool."""

    process: subprocess.Popen[bytes]
    metrics_url: str
    started_at: float


class Pool:
    """The worker processes of one queue."""

    def __init__(self, queue: str, env: dict[str, str]) -> None:
        self.queue = queue
        self.env = env
        self.running: list[Member] = []
        self.stopping: list[Member] = []

    @property
    def size(self) -> int:
        """Processes running or starting (not those stopping)."""
        return len(self.running)

    def grow(self, count: int) -> None:
        """Start ``count`` more workers."""
        for _ in range(count):
            port = free_port()
            command = [*worker_command(self.queue, 1), "--threads", "1"]
            env = {**self.env, "EMBEDQ_METRICS_PORT": str(port),
                   "EMBEDQ_METRICS_ADDRESS": "127.0.0.1"}
            self.running.append(Member(subprocess.Popen(command, env=env),
                                       f"http://127.0.0.1:{port}/metrics", time.monotonic()))

    def shrink(self, count: int) -> None:
        """Warm-stop the ``count`` newest workers (the oldest are surely warm)."""
        for _ in range(min(count, len(self.running))):
            member = self.running.pop()
            member.process.terminate()
            self.stopping.append(member)

    def reap(self) -> list[int]:
        """Forget exited workers; returns the exit codes of those that were not told to stop."""
        crashed = [m.process.returncode for m in self.running if m.process.poll() is not None]
        for code in crashed:
            log.warning("autoscale_worker_exited", queue=self.queue, code=code,
                        action="the next tick starts another if the queue still needs it")
        self.running = [m for m in self.running if m.process.poll() is None]
        self.stopping = [m for m in self.stopping if m.process.poll() is None]
        return crashed

    def served(self) -> dict[str, float]:
        """Texts served so far by each member that answers (stopping ones included)."""
        counts = {}
        for member in [*self.running, *self.stopping]:
            totals = scrape(member.metrics_url)
            if totals is not None and self.queue in totals:
                counts[member.metrics_url] = totals[self.queue].texts
        return counts

    def stop_all(self, grace_s: float) -> None:
        """Warm-stop every member, then wait (SIGKILL after ``grace_s``)."""
        members, self.running, self.stopping = [*self.running, *self.stopping], [], []
        stop_processes([m.process for m in members], grace_s)
