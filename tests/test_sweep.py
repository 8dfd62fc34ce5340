"""`safeeval sweep`: a study from one file, resumable, ending in a leaderboard and a report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from safeeval.cli import app
from safeeval.errors import SafeevalError
from safeeval.sweep import load_sweep, run_sweep


def _write(tmp_path, tiny_model, data_dir, **extra) -> str:
    spec = {
        "runs": str(tmp_path / "runs"), "data_dir": str(data_dir), "reference": [str(tiny_model)],
        "train": {"steps": 2, "batch_size": 4, "max_length": 256, "lr": 1e-3, "save_steps": 2},
        "align": {"base": str(tiny_model), "task": "dolly", "method": "er", "method_options": {"ratio": 0.5}},
        "grid": {"task": "sst2", "scenario": ["benign", "poisoned"], "method": ["sft", "er"], "seed": [0]},
        "method_options": {"er": {"ratio": 0.25}},
        "score": {"tasks": ["smoke"], "judges": ["keyword"], "limit": 4, "max_new_tokens": 4},
        "report": {"dir": str(tmp_path / "docs"), "baseline": "aligned"},
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_sweep_runs_resumes_and_reports(tiny_model, data_dir, tmp_path):
    path = _write(tmp_path, tiny_model, data_dir)
    _, steps = load_sweep(path)
    assert [s.kind for s in steps] == ["reference", "align"] + ["finetune"] * 4
    assert steps[-1].train.base.endswith("aligned/model") and steps[-1].train.method_options == {"ratio": 0.25}
    store = str(tmp_path / "store.db")
    first = CliRunner().invoke(app, ["sweep", path, "--store", store])
    assert first.exit_code == 0, first.output
    board = (tmp_path / "docs" / "leaderboard.md").read_text()
    assert "align (er)" in board and "poisoned" in board and (tmp_path / "docs" / "report.html").exists()
    trained = json.loads((tmp_path / "runs" / "sst2-poisoned-er-s0" / "training.json").read_text())
    assert trained["data"]["mix"]["poison"] > 0 and trained["base_model"]["name"].endswith("aligned/model")
    # again, in this process this time: nothing is retrained, generated or judged
    said = []
    run_sweep(path, say=said.append, store=store, isolate=False)
    assert sum("nothing to train" in line for line in said) == 5  # the alignment run and the four cells
    results = json.loads((tmp_path / "runs" / "sst2-benign-sft-s0" / "score" / "results.json").read_text())
    assert results["counts"]["generated_now"] == 0 and results["counts"]["judged_now"] == 0
    assert list(results["tasks"]) == ["smoke", "sst2"]  # the utility it was trained for, added to score.tasks
    # a study cut short publishes what finished, names what did not, and runs nothing
    (tmp_path / "runs" / "sst2-poisoned-er-s0" / "score" / "results.json").unlink()
    cut = CliRunner().invoke(app, ["sweep", path, "--store", store, "--report-only"])
    assert cut.exit_code == 0 and "left out of the report: sst2-poisoned-er-s0" in cut.output
    assert "5 finished steps reported (1 not finished)" in cut.output
    board = (tmp_path / "docs" / "leaderboard.md").read_text()
    assert "sst2 · er · benign" in board and "sst2 · er · poisoned" not in board and "sst2 · sft · poisoned" in board
    assert not (tmp_path / "runs" / "sst2-poisoned-er-s0" / "score" / "results.json").exists()


def test_grid_tasks_bring_their_utility_and_their_settings(tiny_model, data_dir, tmp_path):
    grid = {"task": ["sst2", "gsm8k", str(tmp_path / "mine.jsonl")], "method": ["sft"], "scenario": ["benign"]}
    _, steps = load_sweep(_write(tmp_path, tiny_model, data_dir, grid=grid, task_settings={"gsm8k": {"max_length": 384}}))
    assert [s.train.max_length for s in steps if s.kind == "finetune"] == [256, 384, 256]  # long answers get room
    tasks = {s.name.split("-benign")[0]: s.tasks for s in steps}
    assert tasks["reference-" + tiny_model.name] == tasks["aligned"] == ["smoke", "sst2", "gsm8k"]
    assert tasks["sst2"] == ["smoke", "sst2"] and tasks["gsm8k"] == ["smoke", "gsm8k"]
    assert tasks["mine"] == ["smoke"]  # a user's file has no evaluation task; its run is named by its stem
    listed = CliRunner().invoke(app, ["sweep", _write(tmp_path, tiny_model, data_dir, grid=grid), "--dry-run"])
    assert listed.exit_code == 0 and "scored on smoke, gsm8k" in listed.output
    early = CliRunner().invoke(app, ["sweep", str(tmp_path / "sweep.yaml"), "--report-only"])
    assert early.exit_code == 2 and "No step of the sweep has finished yet" in early.output


def test_a_bad_cell_is_caught_before_anything_runs(tiny_model, data_dir, tmp_path):
    path = _write(tmp_path, tiny_model, data_dir, method_options={"er": {"ratio": 3}})
    with pytest.raises(SafeevalError, match=r"option ratio must lie in"):
        load_sweep(path)
    result = CliRunner().invoke(app, ["sweep", path, "--dry-run"])
    assert result.exit_code == 2 and not (tmp_path / "runs").exists()


def test_stopping_the_sweep_stops_its_running_step(tiny_model, data_dir, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import psutil

    path = _write(tmp_path, tiny_model, data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "safeeval", "sweep", path, "--store", str(tmp_path / "s.db")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    children = []
    while time.time() < deadline and not children:
        children = psutil.Process(proc.pid).children()
        time.sleep(0.1)
    assert children, "the sweep never started a step"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive  # no step left running on its own


def test_merges_wait_for_the_sft_run_they_edit_whatever_the_grid_order(tiny_model, data_dir, tmp_path):
    grid = {"task": "sst2", "scenario": ["benign", "poisoned"], "method": ["linear", "sft", "ties"]}
    _, steps = load_sweep(_write(tmp_path, tiny_model, data_dir, grid=grid, reference=[]))
    order = [s.name for s in steps]
    assert order.index("sst2-benign-sft-s0") < order.index("sst2-benign-linear-s0")  # moved back past its sft
    after = {s.name: s.after for s in steps}
    assert after["sst2-poisoned-ties-s0"] == ["aligned", "sst2-poisoned-sft-s0"] and after["aligned"] == []
    # no sft cell in the grid: one sft step per setting, shared by its merges, in the folder the trainer would use
    grid["method"] = ["linear", "ties"]
    _, steps = load_sweep(_write(tmp_path, tiny_model, data_dir, grid=grid, reference=[]))
    shared = [s for s in steps if s.kind == "shared-sft"]
    assert [s.train.scenario for s in shared] == ["benign", "poisoned"] and not shared[0].tasks
    from safeeval.train.trainer import default_out

    assert shared[0].name == default_out(shared[0].train).name and shared[0].after == ["aligned"]
    assert {s.name: s.after[-1] for s in steps if s.kind == "finetune"} == {
        "sst2-benign-linear-s0": shared[0].name, "sst2-benign-ties-s0": shared[0].name,
        "sst2-poisoned-linear-s0": shared[1].name, "sst2-poisoned-ties-s0": shared[1].name}
    listed = CliRunner().invoke(app, ["sweep", str(tmp_path / "sweep.yaml"), "--dry-run"])
    assert listed.exit_code == 0 and "not scored: the run merges edit; after aligned" in listed.output


def test_resources_and_retries_are_checked_before_anything_runs(tiny_model, data_dir, tmp_path):
    resources = {"finetune": {"num_cpus": 2, "num_gpus": 1}, "er": {"num_gpus": 4, "memory": 8e9}, "align": {}}
    _, steps = load_sweep(_write(tmp_path, tiny_model, data_dir, resources=resources, max_retries=0))
    asked = {s.name: s.resources for s in steps}
    assert asked["sst2-benign-er-s0"] == {"num_cpus": 2, "num_gpus": 4, "memory": 8e9}  # the method's over its stage's
    assert asked["sst2-benign-sft-s0"] == {"num_cpus": 2, "num_gpus": 1} and asked["aligned"] == {}
    for bad, said in [({"grsap-x": {}}, "neither"), ({"er": {"gpus": 1}}, "take num_cpus, num_gpus, memory"),
                      ({"er": {"num_gpus": 1.5}}, "whole GPUs above one"), ({"er": {"num_cpus": -1}}, "at least 0")]:
        with pytest.raises(SafeevalError, match=said):
            load_sweep(_write(tmp_path, tiny_model, data_dir, resources=bad))
    with pytest.raises(SafeevalError, match="max_retries must be a whole number"):
        load_sweep(_write(tmp_path, tiny_model, data_dir, max_retries="twice"))
