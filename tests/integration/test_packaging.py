"""The wheel as a user gets it: built without a packaging warning, and carrying every data file.

Setuptools warns ("Package would be ignored") about a folder Python could import but the
configuration ships only as package data; such a warning on every install hides real ones, and
a data file missing from the wheel breaks `embedq eval` and the precision probe only after
installation, never in a checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Folders of data files, as (folder in the repository, its place in the installed package).
DATA = {"worker/models/data": "embedq/worker/models/data",
        "ops/evaluation/data": "embedq/ops/evaluation/data",
        "ops/dashboard/static": "embedq/ops/dashboard/static"}


def test_the_wheel_builds_without_warnings_and_ships_every_data_file(tmp_path):
    source = tmp_path / "source"  # pip builds in the tree it is given: not in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "benchmarks", "docs"))
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", str(source), "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "warning" not in output.lower(), output[-3000:]
    (wheel,) = tmp_path.glob("embedq-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for folder, installed in DATA.items():
        files = [p for p in (REPO / folder).rglob("*") if p.is_file()
                 and "__pycache__" not in p.parts]
        assert files, folder
        missing = [str(p) for p in files
                   if f"{installed}/{p.relative_to(REPO / folder).as_posix()}" not in shipped]
        assert not missing, f"not in the wheel: {missing}"
    scripts = sorted(p.name for p in (REPO / "worker").glob("*.lua"))
    assert scripts, "the worker's Redis scripts"
    assert [n for n in scripts if f"embedq/worker/{n}" not in shipped] == []
    tasks = sorted(p.name for p in (REPO / "tasks").glob("*.lua"))
    assert [n for n in tasks if f"embedq/tasks/{n}" not in shipped] == [], "the tasks' scripts"
    for module in ("ops/autoscale/policy.py", "ops/k8s/render.py"):  # packages, not data
        assert f"embedq/{module}" in shipped, module


def test_the_installed_package_finds_its_data():
    sts = resources.files("embedq.worker.models").joinpath("data/sts.csv")
    assert sts.is_file()
    assert sts.read_text(encoding="utf-8").startswith("sentence1,sentence2,score")
    assert resources.files("embedq.ops.dashboard").joinpath("static", "index.html").is_file()
