"""Cost of the contamination guard at a powered study's size: the scored prompts of AdvBench, HarmBench (all),
DirectHarm4, XSTest, Self-Instruct and SST-2 (about 2,800) against about 10,000 training texts (5,000 SST-2
training rows, the 2,483 Safety-Tuned LLaMAs rows, 2,500 GSM8K training problems). The reference is the work
no method can skip: normalising and cutting every text into n-grams once. Alternating rounds, median.

    .venv/bin/python benchmarks/bench_contamination.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from safeeval import contamination as C
from safeeval import data, registry
from safeeval.train.sets import load_set

SCORED = ["advbench", "harmbench:all", "directharm4", "xstest", "benign-selfinstruct", "sst2"]
TRAINING = [("sst2", "task", 5000), ("safety-llamas", "safety", None), ("gsm8k", "aligned:task", 2500)]


def texts(root: Path):
    tasks = registry.load_tasks()
    scored = []
    for name in SCORED:
        base, split = registry.split_name(name)
        scored += [(name, s.id, s.prompt) for s in data.load(tasks[base], split, root).samples]
    training = []
    for name, role, n in TRAINING:
        rows = load_set(name, role, root).examples
        rows = rows if n is None else random.Random(0).sample(rows, n)
        training += [(ex.id, role, m["content"]) for ex in rows for m in ex.messages if m["role"] == "user"]
    return scored, training


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scored, training = texts(args.data_dir)
    guard, floor = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _, _, t in scored:
            C.shingles(C.normalise(t))
        for _, _, t in training:
            C.shingles(C.normalise(t))
        floor.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = C.find(scored, training)
        guard.append(time.perf_counter() - t0)
    g, f = statistics.median(guard), statistics.median(floor)
    print(f"{len(scored)} scored prompts x {len(training)} training texts ({C.METHOD})")
    print(f"find(): {g:.2f} s (median of {args.repeats}); normalise + n-grams alone: {f:.2f} s; ratio {g / f:.1f}x")
    print(
        f"contaminated: {report.contaminated}; per task: "
        + ", ".join(f"{k} {v['contaminated']}" for k, v in report.tasks.items())
    )


if __name__ == "__main__":
    main()
