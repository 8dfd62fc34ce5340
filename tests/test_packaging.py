"""The specs ship inside the wheel, so an installed safeeval works from any folder."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_carries_task_and_judge_specs(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("safeeval-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for spec in (REPO / "tasks").glob("*.yaml"):
        assert f"safeeval/specs/tasks/{spec.name}" in names
    for spec in (REPO / "judges").glob("*.yaml"):
        assert f"safeeval/specs/judges/{spec.name}" in names
    # The licence pyproject declares ships with it, as its text says it must.
    licence = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    text = zipfile.ZipFile(wheel).read(licence).decode()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert text == (REPO / "LICENSE").read_text()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata


def test_registry_lists_tasks_from_another_folder(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "safeeval", "tasks"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout
    for name in ("advbench", "harmbench", "hexphi", "smoke"):
        assert name in out
