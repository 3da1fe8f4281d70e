#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run lint, type checks and the tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k bundle -x).
set -euo pipefail
cd "$(dirname "$0")/.."
EDGE_EXTRAS=${EDGE_EXTRAS:-build,rtx,serve,demo,events,dev} bash scripts/setup.sh
. .venv/bin/activate
if [ -f scripts/make_stubs.py ]; then
  python scripts/make_stubs.py .cache/stubs
  export MYPYPATH=$PWD/.cache/stubs
fi
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
python -m pytest "$@"
