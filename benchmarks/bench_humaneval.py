"""HumanEval execution in the sandbox, in one process (machines here are noisy: read the ratios).

Measures, on the 164 canonical solutions (each program = prompt + solution + test + check(...)):
  1. throughput (samples/s) of sandboxed runs with 1 worker and with all cores (threads over run_program);
  2. the sandbox's overhead per sample against a bare `python -c PROGRAM` of the same program,
     one at a time, sandboxed and bare rounds alternating.

    .venv/bin/python benchmarks/bench_humaneval.py --rounds 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from safeeval.scoring.humaneval import build_program
from safeeval.scoring.sandbox import check_sandbox, run_program

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def sandboxed(programs: list[str], workers: int, timeout_s: float, python: str) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: run_program(p, timeout_s, 2048, python=python), programs))
    took = time.perf_counter() - start
    bad = [r.status for r in results if r.status != "passed"]
    assert not bad, f"canonical solutions did not pass: {bad[:5]}"
    return took


def bare(programs: list[str], timeout_s: float, python: str) -> float:
    start = time.perf_counter()
    for p in programs:
        done = subprocess.run(
            [python, "-c", p], check=False, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 0, done.stderr[-300:]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=164, help="problems (from the start of the file)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    with gzip.open(args.data / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f][: args.n]
    programs = [build_program(r["prompt"] + r["canonical_solution"], r["test"], r["entry_point"]) for r in rows]
    check_sandbox(args.python)
    cores = os.cpu_count() or 1
    n = len(programs)

    one, many, sbx, raw = [], [], [], []
    for _ in range(args.rounds):
        one.append(sandboxed(programs, 1, args.timeout, args.python))
        many.append(sandboxed(programs, cores, args.timeout, args.python))
        # Overhead: the same programs one at a time, sandboxed then bare, alternating.
        sbx.append(one[-1])
        raw.append(bare(programs, args.timeout, args.python))
    med = statistics.median
    report = {
        "programs": n,
        "cores": cores,
        "samples_per_s_1_worker": round(n / med(one), 1),
        f"samples_per_s_{cores}_workers": round(n / med(many), 1),
        "per_sample_ms_sandbox_1_worker": round(1000 * med(sbx) / n, 1),
        "per_sample_ms_bare_python_c": round(1000 * med(raw) / n, 1),
        "sandbox_overhead_ms_per_sample": round(1000 * (med(sbx) - med(raw)) / n, 1),
        "sandbox_over_bare_time_ratio": round(med(sbx) / med(raw), 2),
        "rounds": args.rounds,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
