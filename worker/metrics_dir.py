"""The directory prometheus_client's multiprocess mode needs, set before it is imported.

prometheus_client decides once, when first imported, whether values live in process memory or
in files under ``PROMETHEUS_MULTIPROC_DIR``; pool processes forked later inherit that choice.
So a worker that exports metrics calls `prepare` first thing at process start, before anything
imports prometheus_client, and gets a fresh directory of its own (left-over files from an
earlier run would be summed into this one's counters).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(enabled: bool) -> str | None:
    """Create and export a private directory when ``enabled`` (metrics on) and none is set."""
    if not enabled:
        return None
    if os.environ.get(ENV):
        return os.environ[ENV]
    path = tempfile.mkdtemp(prefix="embedq-metrics-")
    os.environ[ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
