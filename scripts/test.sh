#!/usr/bin/env bash
# Set up, then run the whole test suite (reference data is read from ../shared/data or $SAFEEVAL_TEST_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The HTML report is tested in a real headless browser: Debian's chromium, installed when we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test of the HTML report will be skipped"
fi
# accelerate's MULTI_CPU launches start their processes with mpirun: Debian's Open MPI, installed when we can.
if ! command -v mpirun >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin >/dev/null) \
    || echo "warning: could not install openmpi-bin; the MULTI_CPU accelerate launch test will be skipped"
fi
exec .venv/bin/python -m pytest -q "$@"
