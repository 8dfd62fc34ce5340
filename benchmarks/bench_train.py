"""Time per step and peak memory of every training method, as ratios to `sft` measured in the same process.

    .venv/bin/python benchmarks/bench_train.py --model smollm2 --steps 6 --data-dir ../shared/data

Each method trains `--steps` LoRA steps on SST-2 (batch 8); `sft` runs before every method and the ratio
uses the median of its runs, so a noisy machine moves both sides. The first step (warm-up, lazy init) is
left out: the per-step time is the median of the others. Peak memory is the highest RSS sampled during the run minus the RSS before
it. One-off costs: EWC's Fisher estimate and GR-SAP's synthesis (small settings, scaled per sample).
Post-hoc merges train nothing: their cost is the merge itself, reported in seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safeeval.train import load_config, train  # noqa: E402

TRAINED = ["sft", "er", "der", "derpp", "agem", "l2", "ewc", "lwf", "lisa", "safelora", "grsap"]
POST_HOC = ["linear", "task-arithmetic", "ties", "dare", "magmax"]


class PeakRSS:
    def __init__(self):
        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()

    def __enter__(self):
        self.start = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def mib(self) -> float:
        return max(0, self.peak - self.start) / 2**20


def step_seconds(record: dict) -> float:
    return record["trainer"]["seconds_per_step"]  # the median step after the first


def run(method: str, args, folder: Path, options: dict | None = None) -> tuple[dict, float]:
    cfg = load_config(None, dict(base=args.model, task="sst2", method=method, method_options=options or {},
                                 steps=args.steps, batch_size=8, max_length=args.max_length, lr=2e-4, seed=0,
                                 save_steps=10_000, data_dir=args.data_dir, out=str(folder / f"{method}-{time.time_ns()}")))
    with PeakRSS() as rss:
        record = train(cfg, notify=lambda text: None)
    return record, rss.mib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--methods", default=",".join(TRAINED + POST_HOC))
    parser.add_argument("--out", default=None, help="Also write the figures as JSON here.")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m != "sft"]
    special = {"safelora": {"base": args.model}, "magmax": {"base": args.model},
               "grsap": {"per_domain": 4, "domains": "violence,cybercrime", "max_response_tokens": 64}}
    rows, sft_steps, sft_mem = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for method in methods:
            ref, ref_mem = run("sft", args, folder)
            sft_steps.append(step_seconds(ref))
            sft_mem.append(ref_mem)
            started = time.perf_counter()
            record, mem = run(method, args, folder, special.get(method))
            wall = time.perf_counter() - started
            row = {"step_s": round(step_seconds(record), 3), "peak_mib": round(mem, 1),
                   "setup_s": record["trainer"]["setup_seconds"], "finish_s": record["trainer"]["finish_seconds"],
                   "wall_s": round(wall, 1)}
            if method in POST_HOC:
                row = {"merge_s": record["trainer"]["finish_seconds"]}
            if method == "ewc":
                row["fisher_s"] = record["method"].get("fisher_seconds")
            rows[method] = row
            print(method, row, flush=True)
    sft = statistics.median(sft_steps)
    for method, row in rows.items():
        if "step_s" in row:
            row["step_vs_sft"] = round(row["step_s"] / sft, 2)
    report = {"model": args.model, "steps": args.steps, "batch_size": 8, "max_length": args.max_length,
              "sft_step_s_median": round(sft, 3), "sft_step_s_all": [round(s, 3) for s in sft_steps],
              "sft_peak_mib_median": round(statistics.median(sft_mem), 1), "methods": rows}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
