"""`safeeval sweep --ray`: a study's steps as tasks on a real local Ray cluster (two CPUs, as CI has).

The cluster is started once for the module. Its workers get PYTHONHASHSEED and OMP_NUM_THREADS fixed, as the
sequential sweep below does: peft writes an adapter's target modules in set order, which a folder's fingerprint (so
a generation's key) reads, and float sums depend on the number of threads; fixed, both runners train the same bits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import yaml
from conftest import REPO
from test_sweep import _write
from typer.testing import CliRunner

from safeeval.cli import app
from safeeval.cluster import run_on_ray
from safeeval.sweep import run_sweep

TRAIN = {"steps": 2, "batch_size": 4, "max_length": 256, "lr": 1e-3, "save_steps": 2}  # test_sweep's

SAME_BITS = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def test_importing_safeeval_never_imports_ray():
    code = (
        "import sys, safeeval, safeeval.cli, safeeval.sweep, safeeval.store, safeeval.cluster; "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path):
    # Ray is installed here; blocking its import stands in for a machine without it.
    code = "import sys; sys.modules['ray'] = None; from safeeval.cli import app; app()"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump({"runs": str(tmp_path / "runs"), "grid": {"task": "sst2"}, "train": {"base": "unused"}})
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "sweep", str(sweep), "--ray", "local"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 2 and "pip install 'safeeval[ray]'" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray

    saved = dict(os.environ)
    os.environ.update(
        SAME_BITS,
        SAFEEVAL_HOME=str(tmp_path_factory.mktemp("home")),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        RAY_worker_niceness="0",
    )  # Ray's workers run niced (15) otherwise
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # workers take this env
    os.environ.clear()
    os.environ.update(saved)
    yield ray
    ray.shutdown()


def _cells(tmp_path, tiny_model, data_dir, train: dict, **extra) -> str:
    """test_sweep's study without its reference model and alignment run: cells fine-tuning the tiny model itself."""
    return _write(
        tmp_path,
        tiny_model,
        data_dir,
        reference=[],
        align=None,
        report={"dir": str(tmp_path / "docs")},
        train={**TRAIN, "base": str(tiny_model), **train},
        **extra,
    )


def _rows(store) -> dict:
    db = sqlite3.connect(store)
    return {
        "generations": set(db.execute("SELECT key, response FROM generations")),
        "judgments": set(db.execute("SELECT key, verdict FROM judgments")),
        "runs": set(db.execute("SELECT id FROM runs")),
    }


def _metrics(runs) -> dict:
    return {p.parent.parent.name: json.loads(p.read_text())["metrics"] for p in runs.glob("*/score/results.json")}


@pytest.mark.slow
def test_a_sweep_on_ray_ends_as_the_sequential_sweep_with_independent_steps_at_once(
    cluster, tiny_model, data_dir, tmp_path, monkeypatch
):
    path = _write(
        tmp_path,
        tiny_model,
        data_dir,
        reference=[],  # alignment, 2 methods x 2 scenarios, merges
        grid={"task": "sst2", "scenario": ["benign", "poisoned"], "method": ["sft", "linear"]},
    )
    for name, value in SAME_BITS.items():
        monkeypatch.setenv(name, value)  # for the sequential sweep's step processes
    run_sweep(path, store=tmp_path / "sequential.sqlite")
    runs = tmp_path / "runs"
    board = (tmp_path / "docs" / "leaderboard.md").read_text()
    expected = (_metrics(runs), board, _rows(tmp_path / "sequential.sqlite"))
    shutil.rmtree(runs)  # the same folders again: a run's settings name its base model's folder
    shutil.rmtree(tmp_path / "docs")

    got = CliRunner().invoke(app, ["sweep", path, "--store", str(tmp_path / "ray.sqlite"), "--ray", "local"])
    assert got.exit_code == 0, got.output
    assert "started  sst2-benign-sft-s0 on" in got.output and "finished sst2-poisoned-linear-s0 on" in got.output
    metrics, board = _metrics(runs), (tmp_path / "docs" / "leaderboard.md").read_text()
    assert len(metrics) == 5 and (metrics, board) == expected[:2]
    assert _rows(tmp_path / "ray.sqlite") == expected[2]  # the same generations, verdicts and runs
    summary = json.loads((runs / "sweep.json").read_text())
    steps = summary["timeline"]
    assert steps["sst2-benign-sft-s0"]["started"] >= steps["aligned"]["ended"]  # after what it fine-tunes
    assert steps["sst2-benign-linear-s0"]["started"] >= steps["sst2-benign-sft-s0"]["ended"]  # after the run it edits

    def overlap(a, b):
        return steps[a]["started"] < steps[b]["ended"] and steps[b]["started"] < steps[a]["ended"]

    assert overlap("sst2-benign-sft-s0", "sst2-poisoned-sft-s0")  # independent cells ran at once
    assert overlap("sst2-benign-linear-s0", "sst2-poisoned-linear-s0")
    assert summary["merged"]["generations"]["conflicts"] == 0 and summary["merged"]["generations"]["present"] == 0

    again = run_on_ray(path, "local", store=tmp_path / "ray.sqlite")  # finished steps: no work at all
    assert again["ran"] == 0 and again["finished_before"] == 5 and _metrics(runs) == expected[0]


def _kill_when(condition, title: str, killed: list, deadline: float = 240) -> threading.Thread:
    """SIGKILL the Ray worker running the task named `title` once condition() holds."""
    import psutil

    def watch():
        end = time.time() + deadline
        while time.time() < end and not killed:
            if condition():
                for proc in psutil.process_iter(["cmdline"]):
                    if (proc.info["cmdline"] or [""])[0].startswith(f"ray::{title}"):
                        proc.send_signal(signal.SIGKILL)
                        killed.append(proc.pid)
                        return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_a_failing_step_stops_only_what_needs_it(
    cluster, tiny_model, data_dir, tmp_path
):
    # A step that fails for its own reasons at run time: a user file whose rows hold no chat (the pre-flight
    # reads no training set once contamination is allowed, and refuses a file that does not exist at all).
    (tmp_path / "broken.jsonl").write_text('{"nothing": 1}\n')
    path = _cells(
        tmp_path,
        tiny_model,
        data_dir,
        {},
        max_retries=1,
        grid={"task": ["sst2", str(tmp_path / "broken.jsonl")], "method": ["sft", "linear"], "scenario": "benign"},
        task_settings={"sst2": {"steps": 10}},
        allow_contamination=True,
    )
    run = tmp_path / "runs" / "sst2-benign-sft-s0"
    killed: list = []
    saved = run / "checkpoints" / "checkpoint-2" / "trainer_state.json"  # written last: the checkpoint is whole
    watcher = _kill_when(saved.exists, "safeeval:sst2-benign-sft-s0", killed)
    got = CliRunner().invoke(app, ["sweep", path, "--store", str(tmp_path / "s.sqlite"), "--ray", "local"])
    watcher.join(1)
    assert killed, "the training step was never caught mid-training"
    assert got.exit_code == 1, got.output  # a step failed: listed, with its error
    assert "failed: broken-benign-sft-s0:" in got.output and "broken.jsonl" in got.output
    assert "not run, as they need a failed step: broken-benign-linear-s0" in got.output
    record = json.loads((run / "training.json").read_text())
    assert record["trainer"]["resumed_from"] and record["trainer"]["steps"] == 10  # retried, from its checkpoint
    summary = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert summary["failed"] == ["broken-benign-sft-s0"] and summary["skipped"] == ["broken-benign-linear-s0"]
    assert {n for n, s in summary["timeline"].items() if s["status"] == "finished"} == {
        "sst2-benign-sft-s0",
        "sst2-benign-linear-s0",
    }  # the merge of the retried run went on
    # every generation the results use is in the merged store once; no shard brought one twice
    used = {
        json.loads(line)["generation_key"]
        for p in (tmp_path / "runs").glob("*/score/samples.jsonl")
        for line in p.read_text().splitlines()
    }
    db = sqlite3.connect(tmp_path / "s.sqlite")
    assert {k for (k,) in db.execute("SELECT key FROM generations")} == used
    assert summary["merged"]["generations"]["present"] == summary["merged"]["generations"]["conflicts"] == 0
    again = run_on_ray(path, "local", store=tmp_path / "s.sqlite")  # finished steps are not run again
    assert set(again["timeline"]) == {"broken-benign-sft-s0", "broken-benign-linear-s0"}


@pytest.mark.slow
def test_ctrl_c_cancels_the_running_steps(cluster, tiny_model, data_dir, tmp_path):
    import _thread

    import psutil

    path = _cells(
        tmp_path, tiny_model, data_dir, {"steps": 200}, grid={"task": "sst2", "method": "sft", "scenario": "benign"}
    )
    workers: list = []

    def ours(p) -> bool:  # this process's cluster only: another test worker's may run a step of the same name
        try:
            return os.getpid() in {a.pid for a in p.parents()}
        except psutil.Error:
            return False

    def interrupt_once_running():
        deadline = time.time() + 120
        while not workers and time.time() < deadline:
            workers.extend(
                p
                for p in psutil.process_iter(["cmdline"])
                if (p.info["cmdline"] or [""])[0].startswith("ray::safeeval:sst2-benign-sft-s0") and ours(p)
            )
            time.sleep(0.05)
        _thread.interrupt_main()  # what Ctrl-C does to the driver

    # interrupt_main does nothing while SIGINT is ignored or left to the OS, as an earlier test in this process may
    # have left it (CI at 92ba549: DID NOT RAISE); a user's terminal gives Python's own handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_once_running, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_on_ray(path, "local", store=tmp_path / "s.sqlite")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert workers, "the step's worker was never seen running: the interrupt came at its deadline"
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive and cluster.is_initialized()  # cancelled by the driver, which is still connected
    assert not (tmp_path / "runs" / "sst2-benign-sft-s0" / "training.json").exists()


@pytest.mark.slow
def test_a_step_given_two_gpus_trains_under_the_multi_process_launcher(tiny_model, data_dir, tmp_path):
    from safeeval.cluster import launch_training
    from safeeval.train import load_config, train

    cfg = load_config(
        None,
        {
            "base": str(tiny_model),
            "task": "sst2",
            "steps": 2,
            "batch_size": 2,
            "max_length": 256,
            "save_steps": 2,
            "data_dir": str(data_dir),
            "out": str(tmp_path / "run"),
        },
    )
    launch_training(cfg, 2, tmp_path / "shard.sqlite")  # no CUDA here: the launcher's two processes share the CPU
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["trainer"]["world_size"] == 2 and cfg.is_run(record) and record["config_hash"] != cfg.hash
    said = []
    assert train(cfg, notify=said.append)["trainer"]["world_size"] == 2 and "nothing to train" in said[0]
