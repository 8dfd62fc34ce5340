"""A test that cannot run must say so, and in CI (SAFEEVAL_STRICT_TESTS=1) fail instead of passing green.

The helper is conftest.require; these tests run a small suite through it in a child pytest, both ways."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

NEEDS = """
from conftest import require, require_module

def test_needs_a_tool():
    require(False, "the frobnicator is not installed")

def test_needs_a_module():
    require_module("safeeval_no_such_module")

def test_has_what_it_needs():
    require(True, "never shown")
"""


def _pytest(folder: Path, strict: bool) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "SAFEEVAL_STRICT_TESTS": "1" if strict else "0",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(folder),
            str(folder),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=300,
    )


def test_a_missing_requirement_skips_on_a_laptop_and_the_summary_says_why(tmp_path):
    (tmp_path / "test_needs.py").write_text(NEEDS)
    done = _pytest(tmp_path, strict=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 2 skipped" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("skipped 2"))
    assert "1 x the frobnicator is not installed" in line and "safeeval_no_such_module is not importable" in line


def test_a_missing_requirement_fails_in_strict_mode(tmp_path):
    (tmp_path / "test_needs.py").write_text(NEEDS)
    done = _pytest(tmp_path, strict=True)
    assert done.returncode == 1 and "2 failed, 1 passed" in done.stdout, done.stdout + done.stderr
    assert "missing requirement (SAFEEVAL_STRICT_TESTS=1): the frobnicator is not installed" in done.stdout


def test_a_module_level_requirement_skips_the_module_or_fails_its_collection(tmp_path):
    (tmp_path / "test_module.py").write_text(
        'from conftest import require\nrequire(False, "no engine here")\n\ndef test_engine():\n    pass\n'
    )
    (tmp_path / "test_other.py").write_text("def test_other():\n    pass\n")
    lax = _pytest(tmp_path, strict=False)
    assert lax.returncode == 0 and "1 passed, 1 skipped" in lax.stdout, lax.stdout
    assert "1 x no engine here" in lax.stdout
    strict = _pytest(tmp_path, strict=True)
    assert strict.returncode != 0 and "no engine here" in strict.stdout and "1 error" in strict.stdout, strict.stdout


def test_no_test_skips_on_its_own():
    """Every skip goes through conftest.require, so strict mode sees all of them."""
    own = re.compile(r"pytest\.skip\(|importorskip|mark\.skipif|mark\.skip\b|pytest\.xfail|mark\.xfail")
    files = [p for p in sorted(TESTS.glob("*.py")) if p.name not in ("conftest.py", Path(__file__).name)]
    offenders = [
        f"{path.name}:{n}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if own.search(line)
    ]
    assert offenders == []


def test_ci_runs_the_readme_command_in_strict_mode():
    repo = TESTS.parent
    ci = (repo / ".ci" / "run").read_text()
    assert "export SAFEEVAL_STRICT_TESTS=1" in ci and ci.rstrip().endswith("exec bash scripts/test.sh")
    assert "bash scripts/test.sh" in (repo / "README.md").read_text()
