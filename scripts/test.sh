#!/usr/bin/env bash
# The whole test suite, set-up included: the system tools, a venv with the
# dev and bench extras (their tools pinned by constraints/dev.txt), then
# lint, types and tests, then both ends of the supported range
# (noxfile.py): the tests that depend on the versions of Python, redis-py,
# Django, DRF and dmr at the newest end, the whole suite at the lowest. The tests start their own redis-server on a free loopback
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
step 6 "pytest (about 7 minutes on 2 cores)"
.venv/bin/python -m pytest "$@"
if [ "$#" -gt 0 ]; then
  echo "==> [7/7] left out, as arguments were given: run .venv/bin/nox for the supported range"
  exit 0
fi
step 7 "the supported range: nox -s newest lowest, the version-dependent tests at the newest end and the whole suite at the lowest (about 15 minutes)"
.venv/bin/nox -s newest lowest
