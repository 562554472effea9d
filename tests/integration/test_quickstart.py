"""The README's first command, run as written: install, embedded stack, two embeddings, stop."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.model


def test_quickstart_runs_as_written():
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDQ_")}
    run = subprocess.run(["bash", str(REPO / "quickstart.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "stack ready: EMBEDQ_REDIS_URL=redis://127.0.0.1:" in run.stdout
    assert "384-d, norm 1.000" in run.stdout
    assert "etl vectors (8, 384)" in run.stdout
