"""The README's "From Celery" shows the example that the Celery canvas tests run, as written."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_from_celery_example_is_the_tested_file():
    example = (ROOT / "examples" / "celery_user_app.py").read_text()
    doc = (ROOT / "README.md").read_text()
    assert example[example.index("import os"):] in doc


def test_the_task_imports_without_celery_until_asked_for():
    import subprocess
    import sys

    code = ("import sys, embedq.tasks; assert 'celery' not in sys.modules; "
            "from embedq.tasks import embed, vectors_of; print(embed.name)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "embedq.embed"
