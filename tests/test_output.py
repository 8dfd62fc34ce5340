"""Output that works in pipes, logs and CI: names never wrap, listings grep, long work writes steady lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from safeeval.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command,name", [(["tasks"], "directharm4"), (["judges"], "harmbench-cls"), (["train", "--list"], "advbench-pairs")]
)
def test_listings_grep_in_a_narrow_pipe(command, name):
    got = runner.invoke(app, command, env={"COLUMNS": "80"})
    assert got.exit_code == 0, got.output
    lines = [line for line in got.output.splitlines() if line.split("\t")[0] == name]
    assert len(lines) == 1 and "\t" in lines[0]  # one line, the name whole: `| grep NAME` finds it


def test_listings_take_a_format():
    rows = json.loads(runner.invoke(app, ["tasks", "--format", "json"]).stdout)
    assert {"name", "licence"} <= set(rows[0]) and any(r["name"] == "directharm4" for r in rows)
    bad = runner.invoke(app, ["tasks", "--format", "yaml"])
    assert bad.exit_code == 2 and "choose one of table, json, tsv" in bad.output


def test_a_training_run_in_a_log_writes_steps_not_dicts(tiny_model, tmp_path, data_dir):
    env = {**os.environ, "SAFEEVAL_LOG_INTERVAL": "0", "SAFEEVAL_HOME": str(tmp_path / "home")}
    cmd = [
        sys.executable,
        "-m",
        "safeeval",
        "train",
        "--base",
        str(tiny_model),
        "--task",
        "sst2",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--save-steps",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--data-dir",
        str(data_dir),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "training (sft): 4/4 (100%), elapsed" in log and "eta" in log
    assert "step 2/4: loss" in log and "step 4/4: loss" in log
    assert "{'loss'" not in log and "\r" not in log and "it/s" not in log  # no raw dicts, no tqdm bars
