#!/usr/bin/env bash
# Set up, then run the whole test suite (reference data is read from ../shared/data or $SAFEEVAL_TEST_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
