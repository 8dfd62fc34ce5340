"""Cost of a sweep's pre-flight check (safeeval/preflight.py) on configs/mini-repro.yaml without its
`allow_contamination`: 38 steps, every training set of the grid (78,212 texts, SST-2's 67,349 among them) against
the 120 prompts the steps score. Three figures: the first check in a fresh process state (nothing read, nothing
kept); the check again in the same process with the sets already read; and a step process's load of the sweep
once the verdict is kept. The reference is the loading the study itself cannot skip: `load_sweep` without the check.

    .venv/bin/python benchmarks/bench_preflight.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml


def timed(fn) -> tuple[float, float, str]:
    wall, cpu = time.perf_counter(), time.process_time()
    from safeeval.errors import SafeevalError

    try:
        fn()
        said = "passed"
    except SafeevalError as exc:
        said = str(exc)[:100]
    return time.perf_counter() - wall, time.process_time() - cpu, said


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    os.environ["SAFEEVAL_HOME"] = tempfile.mkdtemp()
    spec = yaml.safe_load(Path("configs/mini-repro.yaml").read_text())
    spec.pop("allow_contamination", None)
    folder = Path(tempfile.mkdtemp())
    refused, allowed = folder / "refused.yaml", folder / "allowed.yaml"
    refused.write_text(yaml.safe_dump(spec))
    allowed.write_text(yaml.safe_dump({**spec, "allow_contamination": True}))

    from safeeval import preflight
    from safeeval.sweep import load_sweep

    real = preflight.check
    preflight.check = lambda *a: None
    base = timed(lambda: load_sweep(refused, args.data_dir))
    preflight.check = real
    first = timed(lambda: load_sweep(refused, args.data_dir))
    preflight._FOUND.clear()
    again = timed(lambda: load_sweep(refused, args.data_dir))
    timed(lambda: load_sweep(allowed, args.data_dir))  # passes: its verdict is kept
    preflight._READ.clear()
    preflight._FOUND.clear()
    kept = timed(lambda: load_sweep(allowed, args.data_dir))
    for name, (wall, cpu, said) in [
        ("load_sweep without the check", base),
        ("first check", first),
        ("again, sets read", again),
        ("a step's load, verdict kept", kept),
    ]:
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU; {said}")


if __name__ == "__main__":
    main()
