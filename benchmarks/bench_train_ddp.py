"""Data-parallel training on CPU: the step time of 2 processes against 1 at the same global batch, and the share of a
2-process step spent communicating.

    .venv/bin/python benchmarks/bench_train_ddp.py --model smollm2 --steps 8 --global-batch 8 --data-dir ../shared/data

Four kinds of run, alternated round by round (the machine is shared and noisy), each a fresh command-line run:
- one process with every core and the whole global batch;
- one process with one thread: on a machine whose cores other jobs also use, OpenMP's threads wait for each
  other at every operation, which a process of one thread never does;
- two processes (torchrun, gloo), one core and half the batch each;
- the same two processes with DDP's gradient all-reduce replaced by a hook that returns the local gradients
  at once (the replicas then drift apart, so that run's end-of-run replica check is switched off).
The communication share is (two - two without all-reduce) / two: the all-reduce time a step waits for, what it does
not hide behind the backward pass. safeeval's own per-step collective (the global completion-token count) is
timed directly. On 2 cores no speed-up is expected: this measures the overhead of the distributed path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _no_allreduce() -> None:
    """In a worker: DDP keeps each process's own gradients (a hook that returns them unreduced)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from safeeval.train import trainer

    def local(state, bucket):
        future = torch.futures.Future()
        future.set_result(bucket.buffer())
        return future

    init = DistributedDataParallel.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.register_comm_hook(None, local)

    DistributedDataParallel.__init__ = patched
    trainer._weights_sum = lambda model: None  # the replicas differ by construction here


def _timed_collectives(report: str) -> None:
    """In a worker: time safeeval's own collectives (dist.all_sum) and write the total when the process ends."""
    import atexit

    from safeeval.train import dist

    spent, calls = [0.0], [0]
    original = dist.all_sum

    def timed(tensors):
        started = time.perf_counter()
        try:
            return original(tensors)
        finally:
            spent[0] += time.perf_counter() - started
            calls[0] += 1

    dist.all_sum = timed
    atexit.register(
        lambda: Path(f"{report}.{dist.rank()}").write_text(json.dumps({"seconds": spent[0], "calls": calls[0]}))
    )


def worker() -> None:
    """`bench_train_ddp.py --worker VARIANT REPORT -- train ...`: a safeeval command line, with a variant applied."""
    variant, report = sys.argv[2], sys.argv[3]
    sys.argv = ["safeeval", *sys.argv[5:]]
    sys.path.insert(0, str(ROOT))
    if variant == "no-allreduce":
        _no_allreduce()
    _timed_collectives(report)
    from safeeval.cli import app

    app()


def run(kind: str, args, folder: Path) -> dict:
    out = folder / f"{kind}-{time.time_ns()}"
    processes = 1 if kind.startswith("one") else 2
    threads = 1 if kind == "one-thread" else os.cpu_count() // processes
    train = [
        "train",
        "--base",
        args.model,
        "--task",
        "sst2",
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.global_batch // processes),
        "--max-length",
        str(args.max_length),
        "--save-steps",
        "10000",
        "--data-dir",
        str(args.data_dir),
        "--out",
        str(out),
    ]
    report = str(folder / f"{kind}-collectives")
    script = [str(Path(__file__).resolve()), "--worker", "real" if kind != "no-allreduce" else kind, report, "--"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    if processes == 1:
        command = [sys.executable, *script, *train]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *script,
            *train,
        ]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    record = json.loads((out / "training.json").read_text())
    collectives = json.loads(Path(f"{report}.0").read_text())
    return {
        "step_s": record["trainer"]["seconds_per_step"],
        "steps": record["trainer"]["steps"],
        "collective_s_per_step": collectives["seconds"] / record["trainer"]["steps"],
        "world_size": record["trainer"]["world_size"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default=None, help="Also write the figures as JSON here.")
    args = parser.parse_args()
    args.data_dir = Path(args.data_dir).resolve()
    kinds = ["one", "one-thread", "two", "no-allreduce"]
    seen = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind in kinds:
                seen[kind].append(run(kind, args, Path(tmp)))
                print(f"round {r + 1} {kind}: {seen[kind][-1]}", flush=True)
    step = {k: statistics.median(x["step_s"] for x in v) for k, v in seen.items()}
    figures = {
        "cores": os.cpu_count(),
        "model": args.model,
        "global_batch": args.global_batch,
        "steps": args.steps,
        "max_length": args.max_length,
        "rounds": args.rounds,
        "step_s": {k: round(v, 3) for k, v in step.items()},
        "two_over_one": round(step["two"] / step["one"], 3),
        "two_over_one_thread": round(step["two"] / step["one-thread"], 3),
        "communication_share": round((step["two"] - step["no-allreduce"]) / step["two"], 3),
        "token_count_allreduce_ms_per_step": round(
            1000 * statistics.median(x["collective_s_per_step"] for x in seen["two"]), 2
        ),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({"figures": figures, "runs": seen}, indent=2))


if __name__ == "__main__":
    main()
