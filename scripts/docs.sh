#!/usr/bin/env bash
# The docs site, served locally with live reload (http://127.0.0.1:8000 by
# default): mkdocs from the venv scripts/test.sh builds, whose dev extra
# brings mkdocs-material and mkdocstrings. PYTHON names another interpreter
# that has them. Arguments go to `mkdocs serve` (`--dev-addr HOST:PORT`).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
if ! "$python" -c 'import mkdocs, mkdocstrings, material' 2>/dev/null; then
  echo "scripts/docs.sh: $python has no mkdocs-material and mkdocstrings;" \
    "install the dev extra: $python -m pip install -e '.[dev]'" >&2
  exit 1
fi
# mkdocs-material prints a notice about MkDocs 2 at every start otherwise.
export NO_MKDOCS_2_WARNING=1
exec "$python" -m mkdocs serve "$@"
