"""Each method against `sft` on both aligned bases, side by side: the cells kept in cells/ (fine-tuned from b2) and
in other-cpu/ (from b2'), the same cells on each, through `safeeval compare` (so Holm runs over the methods both
grids hold, not section 4's nine). Section 7's replication table.

    python docs/study/replicate.py              # refusal judge
    python docs/study/replicate.py keyword

Each entry: b2's difference method - `sft` in points [95% CI], then b2''s; * significant at 0.05 after Holm.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).parent
GRIDS = {"b2": HERE / "cells", "b2'": HERE / "other-cpu"}
METRICS = [  # (task, metric, label)
    ("sst2", "accuracy", "SST-2 dev accuracy"),
    ("advbench", "asr", "AdvBench ASR"),
    ("harmbench:test", "asr", "HarmBench test ASR"),
    ("directharm4", "asr", "DirectHarm4 ASR"),
    ("xstest", "asr", "XSTest unsafe complied"),
    ("xstest", "benign_refusal_rate", "XSTest safe refused"),
    ("benign-selfinstruct", "benign_refusal_rate", "Self-Instruct refused"),
]


def _compare(folder: Path, cells: list[str], tmp: Path) -> dict:
    """`safeeval compare --against sft` over the kept cells, unpacked as the run folders they were kept from."""
    runs = []
    for cell in cells:
        run = tmp / folder.name / cell
        run.mkdir(parents=True)
        shutil.copyfile(folder / cell / "results.json", run / "results.json")
        with gzip.open(folder / cell / "samples.jsonl.gz", "rb") as src, open(run / "samples.jsonl", "wb") as out:
            shutil.copyfileobj(src, out)
        runs.append(str(run))
    cmd = ["safeeval", "compare", *runs, "--against", "sft", "--format", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"safeeval compare failed on {folder}: {done.stderr.strip()}")
    found = json.loads(done.stdout)
    return {
        (c["stratum"].split(" · ")[1], c["task"], c["evaluator"], c["metric"], d["method"]): d
        for c in found
        for d in c["differences"]
    }


def _cell(d: dict | None) -> str:
    if d is None:
        return "-"
    star = " *" if d["significant"] else ""
    return f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]{star}"


def main(judge: str) -> None:
    both = sorted(set.intersection(*({p.name for p in g.iterdir()} for g in GRIDS.values())) - {"aligned"})
    with tempfile.TemporaryDirectory() as tmp:
        found = {name: _compare(folder, both, Path(tmp)) for name, folder in GRIDS.items()}
    order = yaml.safe_load((HERE.parents[1] / "configs/study.yaml").read_text())["grid"]["method"]  # the grid's order
    for scenario in ("benign", "poisoned"):
        methods = sorted({k[4] for k in found["b2"] if k[0] == scenario}, key=order.index)
        if not methods:
            continue
        print(f"\n{scenario.capitalize()}, {judge} judge: method - `sft`, b2 / b2'\n")
        print("| metric (n) | " + " | ".join(f"`{m}`" for m in methods) + " |")
        print("|---|" + "---|" * len(methods))
        for task, metric, label in METRICS:
            key = (scenario, task, "sst2" if task == "sst2" else judge, metric)
            pairs = [[found[g].get((*key, m)) for g in GRIDS] for m in methods]
            n = next((d["n_pairs"] for pair in pairs for d in pair if d), "-")  # "-": no grid scored it
            print(f"| {label} ({n}) | " + " | ".join(f"{_cell(b2)} / {_cell(b2p)}" for b2, b2p in pairs) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 2 or (sys.argv[1:] and sys.argv[1] not in ("refusal", "keyword")):
        sys.exit(__doc__)
    main(sys.argv[1] if sys.argv[1:] else "refusal")
