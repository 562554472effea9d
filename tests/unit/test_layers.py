"""The import direction of the README's Architecture section, checked on the source: imports only
point up the picture.

    config <- tasks <- producer | worker <- ops <- cli;   gateway, integrations <- producer

Every import counts, including the lazy ones inside functions: a lazy import of the worker in
the producer would still pull torch into a web process the first time that path runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "config": {"config"},
    "tasks": {"config", "tasks"},
    "producer": {"config", "tasks", "producer"},
    "worker": {"config", "tasks", "worker"},
    "gateway": {"config", "tasks", "producer", "gateway"},
    "integrations": {"config", "tasks", "producer", "integrations"},
    "ops": {"config", "tasks", "producer", "worker", "ops"},
    "cli": {"config", "tasks", "producer", "worker", "ops", "gateway", "integrations", "cli"},
}
# Third-party imports a part must never make (the light producer; a worker without click).
FORBIDDEN = {
    "config": {"torch", "sentence_transformers", "transformers", "celery", "click"},
    "tasks": {"torch", "sentence_transformers", "transformers", "click"},
    "producer": {"torch", "sentence_transformers", "transformers", "onnxruntime", "click"},
    "gateway": {"torch", "sentence_transformers", "transformers", "onnxruntime"},
    "integrations": {"torch", "sentence_transformers", "transformers", "onnxruntime"},
    "worker": {"click"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _sources(part: str) -> list[Path]:
    return sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_point_up_the_layers(part):
    wrong = []
    for path in _sources(part):
        for name in _imports(path):
            top = name.split(".")
            if top[0] == "embedq" and len(top) > 1 and top[1] not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if top[0] in FORBIDDEN.get(part, set()):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_every_part_is_checked():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(ALLOWED), f"add {packages - set(ALLOWED)} to ALLOWED"
    assert {"config", "tasks", "producer", "worker", "ops", "cli"} <= packages
