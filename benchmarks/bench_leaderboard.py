"""Leaderboard cost at scale: N synthetic runs (results.json as `safeeval score` writes them, metrics over 1,000
samples each: two safety tasks with per-category breakdowns, one utility task) -> time and peak Python memory
(tracemalloc, a separate call) of loading, building the table model and rendering it in each format, per layout.

    .venv/bin/python benchmarks/bench_leaderboard.py --runs 1000
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from safeeval import results
from safeeval.report import leaderboard as lb
from safeeval.report.runs import load_runs

MODELS = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b", "gemma-2-9b", "smollm2-1.7b"]
METHODS = ["base", "lora", "qlora", "full", "dpo", "kto", "orpo", "simpo", "sft-safety", "rlhf"]
SCENARIOS = ["benign-ft", "harmful-ft", "identity-shift", "backdoor"]
CATEGORIES = [f"category_{i}" for i in range(11)]


def _rate(rng: random.Random, n: int) -> dict:
    p = rng.random()
    half = 1.96 * (p * (1 - p) / n) ** 0.5
    return {"value": p, "ci_low": max(0.0, p - half), "ci_high": min(1.0, p + half), "n": n}


def synthetic(i: int, rng: random.Random, n: int = 1000) -> dict:
    model, method = MODELS[i % len(MODELS)], METHODS[(i // len(MODELS)) % len(METHODS)]
    scenario = SCENARIOS[(i // (len(MODELS) * len(METHODS))) % len(SCENARIOS)]
    seed = i // (len(MODELS) * len(METHODS) * len(SCENARIOS))

    def safety() -> dict:
        per = n // len(CATEGORIES)
        return {
            "n": n,
            "asr": _rate(rng, n),
            "n_harmful": n,
            "n_judged": n,
            "not_judged": 0,
            "unparsed": 0,
            "harmful_score": _rate(rng, n),
            "benign_refusal_rate": _rate(rng, n // 2),
            "n_benign": n // 2,
            "by": {
                "category": {
                    c: {"asr": _rate(rng, per), "n_harmful": per, "n_judged": per, "not_judged": 0, "unparsed": 0}
                    for c in CATEGORIES
                }
            },
        }

    metrics = {
        "advbench": {"keyword": safety(), "llama-guard": safety()},
        "harmbench": {"harmbench-cls": safety()},
        "gsm8k": {
            "gsm8k": {
                "accuracy": _rate(rng, n),
                "n": n,
                "no_answer": rng.randint(0, 30),
                "not_scored": 0,
                "exact_match_strict": _rate(rng, n),
                "exact_match_flexible": _rate(rng, n),
            }
        },
    }
    return {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": model, "backend": "hf", "fingerprint": f"{i:08x}"},
        "seed": seed,
        "training": {"method": method, "scenario": scenario, "seed": seed},
        "metrics": metrics,
        "counts": {"samples": 3 * n},
    }


def measure(fn):
    """Time untraced (tracemalloc slows Python several-fold), then the peak from a second, traced call."""
    gc.collect()
    t = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, elapsed, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for i in range(args.runs):
            out = Path(tmp) / f"run{i:05d}"
            results.write(out, synthetic(i, rng), [])
            dirs.append(out)
        size = sum((d / "results.json").stat().st_size for d in dirs)
        print(f"{args.runs} runs, results.json {size / len(dirs) / 1024:.1f} KiB each ({size / 2**20:.1f} MiB in all)")
        runs, t, peak = measure(lambda: load_runs(dirs))
        print(f"{'load_runs':<44} {t * 1000:8.1f} ms   peak {peak:6.1f} MiB")
        layouts = {
            "per run": {},
            "per run, --baseline, --metrics all": {
                "baseline": "llama-3.1-8b · base · benign-ft · seed 0",
                "metrics": ["all"],
            },
            "--group-by model,method,scenario": {"group_by": ["model", "method", "scenario"]},
            "per run, --sort, --filter": {
                "sort": "advbench/keyword ASR",
                "desc": True,
                "filters": lb.parse_filters(["scenario=benign-ft", "scenario=harmful-ft"]),
            },
        }
        for name, kwargs in layouts.items():
            board, t, peak = measure(lambda kwargs=kwargs: lb.build(runs, **kwargs))
            print(
                f"build: {name:<37} {t * 1000:8.1f} ms   peak {peak:6.1f} MiB   "
                f"({len(board.rows)} rows x {len(board.columns)} metrics)"
            )
            for fmt in lb.FORMATS:
                text, t, peak = measure(lambda board=board, fmt=fmt: lb.render(board, fmt, 80))
                print(f"  render {fmt:<35} {t * 1000:8.1f} ms   peak {peak:6.1f} MiB   ({len(text) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
