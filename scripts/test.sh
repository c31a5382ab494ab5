#!/usr/bin/env bash
# The whole test suite, set-up included: the system tools, a venv with the
# dev and bench extras, then lint, types and tests. The tests start their
# own redis-server on a free loopback port unless LUATHROTTLE_REDIS_URL
# names one. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "==> [$1/6] $2"; }

step 1 "system tools"
bash scripts/system_tools.sh
step 2 "creating .venv"
python3 -m venv .venv
step 3 "installing luathrottle with the dev and bench extras into .venv (about 2 minutes on a fresh machine)"
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,bench]'
step 4 "ruff check and ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
step 5 "mypy --strict"
.venv/bin/mypy
step 6 "pytest (about 7 minutes on 2 cores)"
.venv/bin/python -m pytest "$@"
