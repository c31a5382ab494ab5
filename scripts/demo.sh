#!/usr/bin/env bash
# The demo, set-up included: a venv with luathrottle (built the first time
# only), then `luathrottle demo` on the embedded backend, which needs no
# Redis. Arguments go to the demo (`--seed`, `--redis URL`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/luathrottle ]; then
  echo "==> creating .venv" >&2
  python3 -m venv .venv
  echo "==> installing luathrottle into .venv (about a minute, the first time only)" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e .
fi
echo "==> luathrottle demo $*" >&2
exec .venv/bin/luathrottle demo "$@"
