"""Time per step and peak memory of every training method, as ratios to `sft` measured in the same process.

    .venv/bin/python benchmarks/bench_train.py --model ALIGNED --pre-alignment smollm2 --steps 6 --data-dir ../shared/data

Each method trains `--steps` LoRA steps on SST-2 (batch 8); `sft` runs before every method and the ratio
uses the median of its runs, so a noisy machine moves both sides. The first step (warm-up, lazy init) is
left out: the per-step time is the median of the others. Peak memory is each method's peak RSS in a fresh
process of its own (3 steps), beside sft's, since an allocator that already grew for an earlier run hides
a later run's needs. One-off costs: EWC's Fisher estimate and GR-SAP's synthesis (small settings, scaled per sample).
Post-hoc merges train nothing: their cost is the merge itself, reported in seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from safeeval.train import load_config, train

TRAINED = ["sft", "er", "der", "derpp", "agem", "l2", "ewc", "lwf", "lisa", "safelora", "grsap"]
POST_HOC = ["linear", "task-arithmetic", "ties", "dare", "magmax"]


def peak_rss_mib(method: str, args, options: dict | None) -> float:
    """Peak RSS of a fresh process that loads the model and trains 3 steps of `method`."""
    code = ("import json, sys; sys.path.insert(0, %r); from benchmarks.bench_train import run; import argparse, tempfile, pathlib;"
            "a = argparse.Namespace(**json.loads(sys.argv[1]));"
            "r, _ = run(sys.argv[2], a, pathlib.Path(tempfile.mkdtemp()), json.loads(sys.argv[3]));"
            "print('PEAK', r['trainer']['peak_rss_mib'])") % str(ROOT)
    given = json.dumps({**vars(args), "steps": 3})
    done = subprocess.run([sys.executable, "-c", code, given, method, json.dumps(options or {})],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split("PEAK")[-1])


def step_seconds(record: dict) -> float:
    return record["trainer"]["seconds_per_step"]  # the median step after the first


def run(method: str, args, folder: Path, options: dict | None = None) -> tuple[dict, float]:
    """Train one method; returns its training record and wall seconds."""
    cfg = load_config(None, dict(base=args.model, task="sst2", method=method, method_options=options or {},
                                 steps=args.steps, batch_size=8, max_length=args.max_length, lr=2e-4, seed=0,
                                 save_steps=10_000, data_dir=args.data_dir, out=str(folder / f"{method}-{time.time_ns()}")))
    started = time.perf_counter()
    record = train(cfg, notify=lambda text: None)
    return record, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2", help="The aligned model (GR-SAP needs one that refuses).")
    parser.add_argument("--pre-alignment", default="smollm2", help="The model --model was aligned from (safelora, magmax).")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--methods", default=",".join(TRAINED + POST_HOC))
    parser.add_argument("--out", default=None, help="Also write the figures as JSON here.")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="Skip the peak-memory processes.")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m != "sft"]
    special = {"safelora": {"base": args.pre_alignment}, "magmax": {"base": args.pre_alignment},
               "grsap": {"per_domain": 4, "domains": "violence,cybercrime", "max_response_tokens": 64}}
    rows, sft_steps = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for method in methods:
            ref, _ = run("sft", args, folder)
            sft_steps.append(step_seconds(ref))
            record, wall = run(method, args, folder, special.get(method))
            row = {"step_s": round(step_seconds(record), 3), "setup_s": record["trainer"]["setup_seconds"],
                   "finish_s": record["trainer"]["finish_seconds"], "wall_s": round(wall, 1)}
            if method in POST_HOC:
                row = {"merge_s": record["trainer"]["finish_seconds"]}
            if method == "ewc":
                row["fisher_s"] = record["method"].get("fisher_seconds")
            rows[method] = row
            print(method, row, flush=True)
    if args.memory:
        sft_peak = peak_rss_mib("sft", args, None)
        for method in methods:
            if method not in POST_HOC:
                rows[method]["peak_rss_mib"] = round(peak_rss_mib(method, args, special.get(method)), 1)
                rows[method]["peak_vs_sft"] = round(rows[method]["peak_rss_mib"] / sft_peak, 2)
    sft = statistics.median(sft_steps)
    for method, row in rows.items():
        if "step_s" in row:
            row["step_vs_sft"] = round(row["step_s"] / sft, 2)
    report = {"model": args.model, "steps": args.steps, "batch_size": 8, "max_length": args.max_length,
              "sft_step_s_median": round(sft, 3), "sft_step_s_all": [round(s, 3) for s in sft_steps],
              "sft_peak_rss_mib": round(sft_peak, 1) if args.memory else None, "methods": rows}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
