"""A sweep on a local Ray cluster against the sequential sweep, on the same 4-cell tiny study, in the same process.

    .venv/bin/python benchmarks/bench_sweep_ray.py --data-dir ../shared/data --cpus 2

The study: the tiny random test model fine-tuned on SST-2 (benign and poisoned) with sft and er, each cell
trained and scored (smoke set, keyword judge), so four independent cells. Each round runs it sequentially
(`run_sweep`, a fresh process per step, as the CLI does; torch's default threads, then one thread per step as a
Ray task of one CPU gets) and on Ray (`run_on_ray`, one task per step) into fresh folders and stores, in rotating
order. The cluster is started once, before the rounds (its start is reported apart). Ray's workers run at nice 0
here, as the sequential steps do (Ray's default is 15).

Ray's overhead per step:
- start: submission to the task's first line, for the cells that found a free CPU (the first wave), from the ray
  run's sweep.json; and, controlled, a no-op step function (importing safeeval.cluster) as a fresh Ray task
  against the same in a spawned process, the sequential sweep's way to start a step;
- in-task: the task's time outside the step's own work (the runs-folder check, packing the shard);
- merge: the driver fetching the shard and merging it into the study's store;
each as a share of the step's own work (imports, train, score). Read the ratios: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def study(folder: Path, model: Path, args) -> Path:
    import yaml

    spec = {
        "runs": str(folder / "runs"),
        "data_dir": str(args.data_dir),
        "train": {
            "base": str(model),
            "steps": args.steps,
            "batch_size": 4,
            "max_length": 256,
            "lr": 1e-3,
            "save_steps": args.steps,
        },
        "grid": {"task": "sst2", "scenario": ["benign", "poisoned"], "method": ["sft", "er"]},
        "score": {"tasks": ["smoke"], "judges": ["keyword"], "limit": args.limit, "max_new_tokens": args.tokens},
        "report": {"dir": str(folder / "docs")},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sequential(folder: Path, model: Path, args, threads: str | None) -> float:
    from safeeval.sweep import run_sweep

    saved = os.environ.get("OMP_NUM_THREADS")
    if threads:
        os.environ["OMP_NUM_THREADS"] = threads  # read by each step's fresh process
    try:
        started = time.perf_counter()
        run_sweep(study(folder, model, args), store=folder / "store.sqlite")
        return time.perf_counter() - started
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
        if saved is not None:
            os.environ["OMP_NUM_THREADS"] = saved


def noop() -> float:
    import safeeval.cluster  # noqa: F401 - what a step's process imports before its work

    return time.time()


def launch_costs(ray, n: int = 3) -> tuple[float, float]:
    """Median seconds from asking for a no-op step to its start: a fresh Ray worker, a spawned process."""
    import multiprocessing

    task = ray.remote(max_calls=1)(noop)
    by_ray, by_spawn = [], []
    for _ in range(n):
        asked = time.time()
        by_ray.append(ray.get(task.remote()) - asked)
        asked = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=noop)
        child.start()
        child.join()
        by_spawn.append(time.perf_counter() - asked)
    return statistics.median(by_ray), statistics.median(by_spawn)


def on_ray(folder: Path, model: Path, args) -> tuple[float, dict]:
    from safeeval.cluster import run_on_ray

    started = time.perf_counter()
    summary = run_on_ray(study(folder, model, args), "local", store=folder / "store.sqlite")
    return time.perf_counter() - started, summary


def overheads(summary: dict) -> dict[str, list[float]]:
    """Per step: start latency (first wave only), in-task time outside the work, merge time, and the work."""
    steps = summary["timeline"].values()
    first = sorted(steps, key=lambda s: s["started"])[: int(summary["ray"]["CPU"])]
    return {
        "start": [s["started"] - s["submitted"] for s in first],
        "in_task": [s["ended"] - s["started"] - s["work_seconds"] for s in steps],
        "merge": [s["merge_seconds"] for s in steps],
        "work": [s["work_seconds"] for s in steps],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8, help="training steps per cell")
    parser.add_argument("--limit", type=int, default=16, help="smoke prompts scored per cell")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per answer")
    args = parser.parse_args()
    os.environ.setdefault("SAFEEVAL_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    os.environ["RAY_worker_niceness"] = "0"
    import ray
    from tiny_model import build_tiny_model

    from safeeval.progress import quiet_libraries

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-ray-"))
    model = build_tiny_model(work / "tiny")
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    print(f"local Ray cluster ({args.cpus} CPUs) started in {time.perf_counter() - started:.1f} s")
    times: dict[str, list[float]] = {"seq": [], "seq1": [], "ray": []}
    costs = {"start": [], "in_task": [], "merge": [], "work": []}
    for r in range(args.rounds):
        order = ["seq", "seq1", "ray"][r % 3 :] + ["seq", "seq1", "ray"][: r % 3]
        for which in order:
            folder = work / f"{which}-{r}"
            folder.mkdir()
            if which != "ray":
                times[which].append(sequential(folder, model, args, "1" if which == "seq1" else None))
                steps = json.loads((folder / "runs" / "sweep.json").read_text())["step_seconds"]
                print(f"round {r}: {which} {times[which][-1]:.1f} s (steps: {steps})")
            else:
                took, summary = on_ray(folder, model, args)
                times["ray"].append(took)
                for name, values in overheads(summary).items():
                    costs[name] += values
                print(f"round {r}: ray {took:.1f} s (steps: {summary['step_seconds']})")
    seq, seq1, par = (statistics.median(times[k]) for k in ("seq", "seq1", "ray"))
    work_s = statistics.median(costs["work"])
    print(
        f"\n4-cell sweep, {args.cpus}-CPU local cluster, medians of {args.rounds} round(s): ray {par:.1f} s; "
        f"sequential {seq:.1f} s (ray / sequential = {par / seq:.2f}); sequential at one thread per step "
        f"{seq1:.1f} s (ray / that = {par / seq1:.2f})"
    )
    print(f"a step's own work on Ray (imports, train, score), median: {work_s:.1f} s")
    by_ray, by_spawn = launch_costs(ray)
    print(
        f"  starting a no-op step: fresh Ray worker {by_ray:.2f} s, spawned process {by_spawn:.2f} s: Ray's extra "
        f"{by_ray - by_spawn:.2f} s = {100 * (by_ray - by_spawn) / work_s:.1f}% of a step"
    )
    for name in ("start", "in_task", "merge"):
        value = statistics.median(costs[name])
        print(f"  ray overhead, {name}: {value:.2f} s per step = {100 * value / work_s:.1f}% of a step")
    total = sum(statistics.median(costs[n]) for n in ("start", "in_task", "merge"))
    print(f"  all three: {total:.2f} s per step = {100 * total / work_s:.1f}% of a step")
    ray.shutdown()


if __name__ == "__main__":
    main()
