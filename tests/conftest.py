from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny_model import build_tiny_adapter, build_tiny_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


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
