"""`safeeval check` cost: time and memory of the paired gate on synthetic runs (no model, no scoring).

    .venv/bin/python benchmarks/bench_gate.py                      # both measurements below
    .venv/bin/python benchmarks/bench_gate.py --runs 100           # a quicker first one

"1,000 runs of 1,000 samples" is measured the two ways a gate meets it:
  A. many checks: 1,000 candidate runs (checkpoints, PRs) of 1,000 samples each, every one gated against one
     baseline, each a full `compare(load_run(base), load_run(cand))` that reads both folders from disk;
  B. one big check: two runs of 1,000 tasks x 1,000 samples (1,000,000 pairs) compared in one call.
Rows are shaped like real samples.jsonl rows (messages, a ~300-character response, a keyword verdict), so
reading JSON is counted as it would be. Peak memory is tracemalloc's peak of Python allocations during the
check, plus the process's peak resident size.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from safeeval import results
from safeeval.report.gate import GateConfig, compare, junit, markdown
from safeeval.report.runs import load_run

RESPONSE = ("I can't help with that. " * 4 + "Here is some general, safe information instead. " * 5)[:300]


def write_run(folder: Path, n_tasks: int, n_samples: int, asr: float, seed: int) -> Path:
    rng = random.Random(seed)
    rows, tasks, metrics = [], {}, {}
    for t in range(n_tasks):
        name = f"task{t}"
        tasks[name] = {
            "spec": name,
            "spec_hash": "s",
            "split": None,
            "source": "local:x sha256:ab",
            "n_samples": n_samples,
            "sample_ids_hash": f"ids{t}",
        }
        metrics[name] = {"keyword": {}}
        for i in range(n_samples):
            harmful = rng.random() < asr
            status = "unparsed" if rng.random() < 0.005 else "ok"
            rows.append(
                {
                    "task": name,
                    "id": f"{name}-{i}",
                    "category": "c",
                    "harmful": True,
                    "meta": {},
                    "messages": [{"role": "user", "content": f"prompt {i} " * 10}],
                    "response": RESPONSE,
                    "finish_reason": "stop",
                    "n_tokens": 64,
                    "verdicts": {
                        "keyword": {
                            "harmful": harmful if status == "ok" else None,
                            "refused": not harmful,
                            "status": status,
                            "score": None,
                            "raw": None,
                            "note": None,
                            "extra": None,
                        }
                    },
                }
            )
    summary = {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": folder.name},
        "generation": {},
        "seed": 0,
        "tasks": tasks,
        "judges": {"keyword": {"fingerprint": "fp"}},
        "scorers": {},
        "metrics": metrics,
    }
    results.write(folder, summary, rows)
    return folder


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, elapsed, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000, help="A: candidate runs gated one by one")
    ap.add_argument("--samples", type=int, default=1000, help="samples per task")
    ap.add_argument("--tasks", type=int, default=1000, help="B: tasks in each of the two big runs")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    cfg = GateConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = write_run(root / "base", 1, args.samples, 0.10, 0)
        cands = [write_run(root / f"cand{k}", 1, args.samples, 0.10 + 0.05 * (k % 3), k + 1) for k in range(args.runs)]

        def many():
            codes = []
            for c in cands:
                rep = compare(load_run(base), load_run(c), cfg)
                markdown(rep), junit(rep)
                codes.append(rep.exit_code)
            return codes

        t0 = time.perf_counter()
        codes = many()
        elapsed = time.perf_counter() - t0
        _, _, peak = measure(lambda: compare(load_run(base), load_run(cands[0]), cfg))
        print(
            f"A. {args.runs} checks, each 2 runs x {args.samples} samples (load + pair + McNemar + bootstrap + "
            f"Markdown + JUnit): {elapsed:.2f} s total, {1000 * elapsed / args.runs:.1f} ms per check; "
            f"one check's traced peak {peak / 2**20:.1f} MiB; "
            f"regressions flagged {sum(c == 1 for c in codes)}/{args.runs}"
        )

        if not args.skip_b:
            big_b = write_run(root / "bigb", args.tasks, args.samples, 0.10, 0)
            big_c = write_run(root / "bigc", args.tasks, args.samples, 0.12, 1)
            size = (big_b / "samples.jsonl").stat().st_size
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t0 = time.perf_counter()
            runs = load_run(big_b), load_run(big_c)
            runs[0].samples(), runs[1].samples()
            t_load = time.perf_counter() - t0
            rep = compare(*runs, cfg)
            elapsed = time.perf_counter() - t0
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"B. 1 check, 2 runs x {args.tasks} tasks x {args.samples} samples "
                f"({args.tasks * args.samples:,} pairs, samples.jsonl {size / 2**20:.0f} MiB each): {elapsed:.1f} s, "
                f"of which {t_load:.1f} s reading JSON and "
                f"{elapsed - t_load:.1f} s comparing; peak resident size grew {rss1 - rss0:.0f} MiB; "
                f"{len(rep.regressions)} of {len(rep.gated)} metrics regressed"
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak resident size {rss:.0f} MiB (python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
