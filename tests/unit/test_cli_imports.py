"""`embedq` imports no prometheus_client before a worker sets up its multiprocess mode: a
client imported earlier counts per process, and the worker's /metrics would miss its pool's
texts (the new autoscale, k8s and probe commands must keep their heavy imports lazy)."""

from __future__ import annotations

import subprocess
import sys


def test_the_command_line_imports_no_prometheus_client():
    code = "import sys, embedq.cli.main; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
