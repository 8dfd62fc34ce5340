"""Training as several processes (DDP over gloo on this CPU), launched the standard ways: torchrun and accelerate.

One launch trains every method with 2 processes of per-device batch 2; each is then trained again in this process
with batch 4 on the same rows and must end with the same weights: DDP's averaging equivalence, which holds only
if the loss is normalised over the global batch's completion tokens (the user's answers here differ in length
from 1 to 40 tokens), replay draws are split between the processes, and every process applies the same update.
Float32 and LoRA dropout 0, so the only difference left is the order of floating-point sums.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from conftest import require
from safetensors.torch import load_file
from tiny_model import build_tiny_model

from safeeval.errors import SafeevalError
from safeeval.train import load_config, train

REPO = Path(__file__).resolve().parents[1]
# answers of very different lengths, so a mean of per-process means would differ from the global token mean
TASK = [
    (f"Question {i}: what do you think of the {w}?", a)
    for i, (w, a) in enumerate(
        [
            ("film", "Good."),
            ("meal", "It was awful, cold and late, and the waiter never came back to our table at all."),
            ("book", "Moving."),
            ("hotel", "Dirty rooms, a broken lift, noise all night; I would never stay there again."),
            ("concert", "Superb."),
            ("service", "Slow."),
            ("garden", "Lovely roses along every path, and a quiet pond."),
            ("drive", "Tedious."),
            ("museum", "Crowded but worth it for the old maps and the ship models upstairs."),
            ("park", "Fine."),
            ("train", "Late again, and the heating was off in every carriage for the whole trip home."),
            ("bakery", "Warm bread."),
        ]
    )
]
# options that make each method's distributed parts act within 3 steps
METHODS = {
    "sft": {},
    "er": {"ratio": 0.25},
    "der": {"replay_batch": 2},
    "derpp": {"replay_batch": 2},
    "agem": {"replay_batch": 2},
    "l2": {"lam": 1.0},
    "ewc": {"lam": 1.0, "n_batches": 3},
    "lwf": {"beta": 1.0},
    "lisa": {"align_steps": 1, "user_steps": 1},
    "safelora": {"rank": 2, "threshold": 0.99},
    "linear": {"lam": 0.5},
    "grsap": {
        "ratio": 0.25,
        "per_domain": 3,
        "domains": "violence,fraud",
        "max_query_tokens": 16,
        "max_response_tokens": 8,
        "judge": "JUDGE",
    },
}
# Max abs difference of any weight. The sums' order alone moves a weight by ~5e-7; Adam, which divides by
# sqrt(v) + 1e-8, turns rounding noise in an entry whose gradient is near 0 into up to ~3e-5 (Lisa). The loss as a
# mean of per-process means (the bug this guards against) moved weights by 3.9e-3 in the same setting.
TOLERANCE = 1e-4
EXTRA = {"agem": {"steps": 6, "lr": 3e-3}}  # A-GEM projects only once the task and safety gradients conflict


def _env(**extra) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def _accelerate(launch: list[str], config: Path, out: Path, **env) -> subprocess.CompletedProcess:
    """`accelerate launch LAUNCH... -m safeeval train --config CONFIG --out OUT`, run to the end."""
    command = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", *launch]
    command += ["-m", "safeeval", "train", "--config", str(config), "--out", str(out)]
    return subprocess.run(command, env=_env(**env), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_dir, tiny_model):
    folder = tmp_path_factory.mktemp("ddp-data")
    (folder / "task.jsonl").write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in TASK))
    rows = json.loads((data_dir / "safety_tuned_llamas" / "safety_only_data_Instructions.json").read_text())[:16]
    (folder / "safety.jsonl").write_text(
        "".join(json.dumps({"prompt": r["instruction"], "response": r["output"][:200]}) + "\n" for r in rows)
    )
    (folder / "vowels.yaml").write_text(
        "name: vowels\nkind: keyword\nmarkers: [a, e, i, o, u]\ncase_sensitive: false\n"
    )  # the tiny model's junk passes as refusals
    build_tiny_model(folder / "prealign", seed=1)  # SafeLoRA's pre-alignment model
    return folder


def settings(files, tiny_model, out, method, **extra) -> dict:
    options = {k: str(files / "vowels.yaml") if v == "JUDGE" else v for k, v in METHODS.get(method, {}).items()}
    if method == "safelora":
        options["base"] = str(files / "prealign")
    values = {
        "base": str(tiny_model),
        "task": str(files / "task.jsonl"),
        "safety": str(files / "safety.jsonl"),
        "method": method,
        "method_options": options,
        "steps": 3,
        "batch_size": 2,
        "max_length": 96,
        "lr": 1e-3,
        "dtype": "float32",
        "lora_dropout": 0.0,
        "lora_r": 4,
        "save_steps": 2,
        "out": str(out),
    }
    return {**values, **EXTRA.get(method, {}), **extra}


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, files, tiny_model):
    """Every method trained once by one 2-process launch."""
    root = tmp_path_factory.mktemp("ddp-runs")
    home = tmp_path_factory.mktemp("ddp-home")
    runs = [settings(files, tiny_model, root / m, m) for m in METHODS]
    runs.append(settings(files, tiny_model, root / "sft-long", "sft", steps=40))  # uninterrupted, for the kill test
    spec = {
        "runs": runs,
        "watch": [str(root), str(home)],
        "report": str(tmp_path_factory.mktemp("ddp-report") / "writes"),
    }
    (root.parent / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        _torchrun(str(REPO / "tests" / "ddp_runs.py"), str(root.parent / "spec.json")),
        env=_env(SAFEEVAL_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    writes = json.loads(Path(spec["report"] + ".1").read_text())
    return {"root": root, "home": home, "writes": writes, "output": done.stdout}


def _weights(record) -> dict:
    folder = Path(record["output"]["adapter"] or record["output"]["model"])
    name = "adapter_model.safetensors" if record["output"]["adapter"] else "model.safetensors"
    return load_file(str(folder / name))


def _trained(run: Path) -> tuple[list[dict], dict]:
    """mix.jsonl's lines, and per rank the set of mix rows it trained on."""
    lines = [json.loads(line) for line in (run / "mix.jsonl").read_text().splitlines()]
    ranks: dict = {0: set(), 1: set()}
    for i, line in enumerate(lines):
        if line["role"] != "replay":
            for _, rank in line["trained"]:
                ranks[rank].add(i)
    return lines, ranks


@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_train_as_one_with_the_global_batch(ddp, files, tiny_model, tmp_path, monkeypatch, method):
    run = ddp["root"] / method
    record = json.loads((run / "training.json").read_text())
    assert record["trainer"]["world_size"] == 2 and record["trainer"]["global_batch"] == 4
    steps = record["trainer"]["steps"]
    assert record["config"]["world_size"] == 2 and record["data"]["mix"]["total"] == steps * 4  # the global batch

    # Only the main process wrote the run folder. The other saved its own RNG state into each checkpoint (the
    # Trainer's rng_state_1.pth, which a resume needs; its makedirs is the only write Python sees), nothing else,
    # and for GR-SAP it neither generated nor cached anything: it received the main process's rows.
    mine = [
        (event, path)
        for event, path in ddp["writes"]
        if path.startswith(str(run) + os.sep) or path == str(run) or path.startswith(str(ddp["home"]))
    ]
    assert all(event == "os.mkdir" and Path(path).parent == run / "checkpoints" for event, path in mine), mine
    if "finetuned_run" not in record:  # a merge trains nothing of its own: its sft run is checked as sft
        assert {Path(path).name for _, path in mine} == {f"checkpoint-{s}" for s in range(2, steps + 1, 2)} | {
            f"checkpoint-{steps}"
        }

    finetuned = Path(record.get("finetuned_run", run))
    lines, ranks = _trained(finetuned)
    assert not ranks[0] & ranks[1]  # the processes shared the mix out, no row twice
    mix_rows = {i for i, line in enumerate(lines) if line["role"] != "replay"}
    if method == "lisa":  # alignment steps (0 and 2) trained on safety rows: the user rows drawn then were not
        replay = [line for line in lines if line["role"] == "replay"]
        assert sorted(s for line in replay for s, _ in line["trained"]) == [0, 0, 0, 0, 2, 2, 2, 2]
        assert len(ranks[0] | ranks[1]) == 4 and all(
            s == 1 for line in lines for s, _ in line["trained"] if line["role"] != "replay"
        )
    else:
        assert ranks[0] | ranks[1] == mix_rows and len(ranks[0]) == len(ranks[1]) == len(mix_rows) / 2

    # One process with twice the batch, on the same rows (GR-SAP reads the rows the launch cached).
    monkeypatch.setenv("SAFEEVAL_HOME", str(ddp["home"]))
    values = settings(files, tiny_model, tmp_path / "single", method, batch_size=4)
    if "replay_batch" in values["method_options"]:  # per device, as the batch is
        values["method_options"]["replay_batch"] *= 2
    single = train(load_config(None, values), notify=lambda text: None)
    assert single["data"]["mix"]["ids_hash"] == record["data"]["mix"]["ids_hash"]
    one, two = _weights(single), _weights(record)
    assert one.keys() == two.keys()
    diff = max(float((one[k] - two[k]).abs().max()) for k in one)
    print(f"{method}: max abs difference 1 vs 2 processes {diff:.2e}")
    assert diff <= TOLERANCE, diff
    if method == "safelora":  # the main process projected
        assert record["method"]["projected_layers"] > 0
    if method == "agem":  # the projection was exercised, at the same steps
        projected = [
            [h["agem_projected"] for h in r["trainer"]["log_history"] if "agem_projected" in h]
            for r in (single, record)
        ]
        assert projected[0] == projected[1] and sum(projected[1]) > 0, projected


def _config(files, tiny_model, tmp_path, **extra) -> Path:
    """The settings as a --config file, for the command line (which has no flag for dtype or LoRA dropout)."""
    values = {k: v for k, v in settings(files, tiny_model, None, "sft", **extra).items() if k != "out"}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_killed_process_fails_the_run_in_a_sentence_and_the_same_command_resumes(ddp, files, tiny_model, tmp_path):
    out = tmp_path / "killed"
    command = _torchrun(
        "-m", "safeeval", "train", "--config", str(_config(files, tiny_model, tmp_path, steps=40)), "--out", str(out)
    )
    launch = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").exists():
        time.sleep(0.05)
    # trainer_state.json marks a complete checkpoint: every process's RNG state is already whole on disk
    for rank in (0, 1):
        torch.load(out / "checkpoints" / "checkpoint-4" / f"rng_state_{rank}.pth", weights_only=False)
    workers = [p for p in psutil.Process(launch.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    assert len(workers) == 1
    workers[0].send_signal(signal.SIGKILL)
    said, _ = launch.communicate(timeout=300)
    assert launch.returncode != 0 and not (out / "training.json").exists()
    assert re.search(
        r"error: Training stopped on process 0 because .+; run the same command again to resume from "
        r"checkpoint-\d+\.",
        said,
    ), said[-3000:]

    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Resuming from" in again.stdout + again.stderr
    record = json.loads((out / "training.json").read_text())
    assert record["trainer"]["resumed_from"] and record["trainer"]["steps"] == 40
    whole = json.loads((ddp["root"] / "sft-long" / "training.json").read_text())
    a, b = _weights(record), _weights(whole)
    assert all((a[k] == b[k]).all() for k in a)  # bit for bit the uninterrupted 2-process run
    assert (out / "mix.jsonl").read_text() == (ddp["root"] / "sft-long" / "mix.jsonl").read_text()


def test_accelerate_launch_with_a_config_trains_as_torchrun_does(ddp, files, tiny_model, tmp_path):
    """accelerate's multi-GPU launcher (torchrun underneath) also runs on CPUs; the run equals the torchrun one."""
    config = tmp_path / "accelerate.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\n"
        "num_processes: 2\nmachine_rank: 0\nmain_process_port: 0\nmixed_precision: 'no'\n"
    )
    out = tmp_path / "accelerated"
    done = _accelerate(["--config_file", str(config)], _config(files, tiny_model, tmp_path), out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    assert record["trainer"]["world_size"] == 2 and record["trainer"]["global_batch"] == 4
    a, b = _weights(record), _weights(json.loads((ddp["root"] / "sft" / "training.json").read_text()))
    assert all((a[k] == b[k]).all() for k in a)
    assert done.stdout.count("Saved:") == 1  # one process reports the run


def test_accelerate_multi_cpu_config_trains_through_mpirun(ddp, files, tiny_model, tmp_path):
    """accelerate's MULTI_CPU configuration starts its processes with mpirun (scripts/test.sh installs Open MPI)."""
    require(shutil.which("mpirun") is not None, "mpirun is not installed (Debian: apt-get install openmpi-bin)")
    with socket.socket() as probe:  # a free port for the process group's store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "hosts").write_text("localhost slots=2\n")
    config = tmp_path / "accelerate.yaml"
    config.write_text(
        f"compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_machines: 1\n"
        f"num_processes: 2\nmachine_rank: 0\nmain_process_ip: 127.0.0.1\nmain_process_port: {port}\n"
        f"mixed_precision: 'no'\nuse_cpu: true\n"
        f"mpirun_config:\n  mpirun_hostfile: {tmp_path / 'hosts'}\n"
    )
    out = tmp_path / "mpi"
    root = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}  # Open MPI refuses root otherwise
    done = _accelerate(["--config_file", str(config)], _config(files, tiny_model, tmp_path), out, **root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    assert record["trainer"]["world_size"] == 2
    a, b = _weights(record), _weights(json.loads((ddp["root"] / "sft" / "training.json").read_text()))
    assert all((a[k] == b[k]).all() for k in a)


def test_accelerate_cpu_launch_that_starts_one_process_is_refused(files, tiny_model, tmp_path):
    """Without mpirun, `accelerate launch --cpu --num_processes 2` (like a MULTI_CPU config) starts a single process."""
    out = tmp_path / "one"
    done = _accelerate(["--cpu", "--num_processes", "2"], _config(files, tiny_model, tmp_path), out)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0 and "accelerate launch started a single process" in said, said[-2000:]
    assert "torchrun --nproc_per_node N" in said and not out.exists()


@pytest.mark.parametrize(
    "env, method, message",
    [
        ({"ACCELERATE_USE_FSDP": "true"}, "der", "Method 'der' needs each process to hold the whole weights"),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            "lisa",
            "which DeepSpeed ZeRO-3 shards across processes",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
            "agem",
            "Method 'agem' edits the gradient before each optimizer step, which DeepSpeed keeps in its own buffers",
        ),
        ({"ACCELERATE_USE_FSDP": "true"}, "sft", "FSDP shards the training over GPUs, and this machine has none"),
    ],
)
def test_what_cannot_work_with_sharding_is_refused_before_loading(
    files, tiny_model, tmp_path, monkeypatch, env, method, message
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SafeevalError, match=re.escape(message)):
        train(load_config(None, settings(files, tiny_model, tmp_path / "run", method)), notify=lambda text: None)
    assert not (tmp_path / "run").exists()
