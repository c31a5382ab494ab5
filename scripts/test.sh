#!/usr/bin/env bash
# The whole test suite, set-up included: redis-server, a venv with the dev
# extra, then lint, types and tests. The tests start their own redis-server
# on a free loopback port unless LUATHROTTLE_REDIS_URL names one.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)  # the TLS test's certificate
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,bench]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
