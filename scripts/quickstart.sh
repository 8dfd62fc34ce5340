#!/usr/bin/env bash
# Set up, then score the packaged SmolLM2-135M-Instruct on the offline smoke set with the keyword judge.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/safeeval score --model smollm2 --tasks smoke --judges keyword "$@"
