#!/usr/bin/env bash
# The whole test suite, set-up included: the system tools, a venv with the
# dev and bench extras (their tools pinned by constraints/dev.txt), then
# lint, types, and the suite but the tests that depend on the versions of
# Python, redis-py, Django, DRF and dmr, which nox then runs at both ends
# of the supported range (noxfile.py's VERSION_TESTS). The tests start their own redis-server on a free loopback
# port unless LUATHROTTLE_REDIS_URL names one. Arguments go to pytest; with
# arguments, the last step is left out.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "==> [$1/7] $2"; }

step 1 "system tools"
bash scripts/system_tools.sh
step 2 "creating .venv"
python3 -m venv .venv
step 3 "installing luathrottle with the dev and bench extras into .venv (about 2 minutes on a fresh machine)"
.venv/bin/pip install -q --disable-pip-version-check -c constraints/dev.txt -e '.[dev,bench]'
step 4 "ruff check and ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
step 5 "mypy --strict"
.venv/bin/mypy
if [ "$#" -gt 0 ]; then
  step 6 "pytest $*"
  .venv/bin/python -m pytest "$@"
  echo "==> [7/7] left out, as arguments were given: run .venv/bin/nox for the supported range"
  exit 0
fi
step 6 "pytest, all but the version-dependent tests, which step 7 runs at both ends (about 5 minutes on 2 cores)"
.venv/bin/python -m pytest --leave-out-version-tests
step 7 "the supported range: nox -s newest lowest, the version-dependent tests at both ends (about 8 minutes)"
.venv/bin/nox -s newest lowest
