#!/usr/bin/env bash
# Quick start: install embedq into .venv, start the embedded stack (a private Redis and one worker
# per configured queue), embed through the search and etl routes, then stop everything.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[worker]'
bash scripts/install-models.sh .venv/bin/python

log=$(mktemp)
.venv/bin/embedq up --no-flower --use-case search --use-case etl 2>"$log" &
stack=$!
trap 'kill -TERM $stack 2>/dev/null; wait $stack 2>/dev/null || true; rm -f "$log"' EXIT
until url=$(grep -o 'EMBEDQ_REDIS_URL=redis://[^ ]*' "$log"); do
  kill -0 $stack 2>/dev/null || { cat "$log"; echo "embedq up failed" >&2; exit 1; }
  sleep 0.5
done
export "${url?}"
echo "stack ready: $url"

.venv/bin/python examples/web_app.py "red running shoes"
.venv/bin/embedq embed --use-case etl --input examples/etl_texts.txt --output /tmp/embedq-etl.npy --overwrite
.venv/bin/python -c "import numpy as np; v = np.load('/tmp/embedq-etl.npy'); print('etl vectors', v.shape, v.dtype)"
