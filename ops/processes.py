"""Stopping child processes the same way everywhere: SIGTERM, a grace period, then SIGKILL.

SIGTERM is Celery's warm shutdown (a batch in progress finishes) and Redis's clean exit; a
process that outlives the grace period is killed so that nothing it started is left behind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


def stop_processes(processes: Sequence[subprocess.Popen[bytes]], grace_s: float) -> None:
    """Terminate all at once, then wait for each, killing any still alive after ``grace_s``."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
