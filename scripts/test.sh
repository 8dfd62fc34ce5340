#!/usr/bin/env bash
# Set up, then run the whole test suite (reference data is read from ../shared/data or $SAFEEVAL_TEST_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# System programs some tests need, from Debian when we can: chromium (the HTML report in a real headless browser)
# and Open MPI (accelerate's MULTI_CPU launch starts its processes with mpirun).
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v mpirun >/dev/null 2>&1 || missing="$missing openmpi-bin"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
    || echo "warning: could not install$missing; the tests that need them will be skipped (failed under SAFEEVAL_STRICT_TESTS=1, as in CI)"
fi
# Lint, format and the import layers of docs/architecture.md, then the suite on every core.
.venv/bin/ruff check safeeval tests benchmarks
.venv/bin/ruff format --check safeeval tests benchmarks
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -q -n "${SAFEEVAL_TEST_WORKERS:-auto}" "$@"
