#!/usr/bin/env bash
# mypy --strict over the installed layout. The folders install as embedq.<name> through
# package-dir mapping, which mypy cannot follow, so it checks a tree of symlinks in that shape.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=$(realpath -s "${1:-$repo/.venv/bin/python}")  # absolute: the check runs elsewhere
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/embedq"
for init in "$repo"/*/__init__.py; do  # every top-level package folder but the tests
  part=$(basename "$(dirname "$init")")
  [ "$part" = tests ] || ln -s "$repo/$part" "$tree/embedq/$part"
done
cd "$tree" && "$python" -m mypy --config-file "$repo/pyproject.toml" -p embedq
