"""Each method against `sft` on both aligned bases, side by side: the cells kept in cells/ (fine-tuned from b2) and
in other-cpu/ (from b2'), the same cells on each, through `safeeval compare` (so Holm runs over the methods both
grids hold, not section 4's nine). Section 7's replication table.

    python docs/study/replicate.py              # refusal judge
    python docs/study/replicate.py keyword
    python docs/study/replicate.py seed0        # every b2' method at seed 0 beside section 4's published tables

Each entry: b2's difference method - `sft` in points [95% CI], then b2''s; * significant at 0.05 after Holm. `seed0`
reads b2's side from section 4's tables in README.md (refusal judge; its `safelora`, `lisa` and poisoned `grsap`
cells were scored before steps were kept in git), so both sides' Holm families are the eight methods. The last line
counts the entries by agreement.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import yaml
from kept import HERE, METRICS, differences, load

GRIDS = {"b2": HERE / "cells", "b2'": HERE / "other-cpu"}


def _compare(folder: Path, cells: list[str], tmp: Path) -> dict:
    """`safeeval compare --against sft` over the kept cells."""
    return differences(load(folder, cells, tmp), "sft")


def _section4() -> dict:
    """Section 4's "each method against `sft`" tables, keyed as `_compare`'s answer."""
    text = (HERE / "README.md").read_text()
    text = text[text.index("**Each method against `sft`**") : text.index("Reading, at one seed")]
    labels = {label: (task, metric) for task, metric, label in METRICS}
    found, scenario, methods = {}, None, []
    for line in text.splitlines():
        if line in ("Benign:", "Poisoned:"):
            scenario = line[:-1].lower()
        elif line.startswith("| metric"):
            methods = [c.strip().strip("`") for c in line.strip("|").split("|")[1:]]
        elif line.startswith("| ") and scenario:
            label, *entries = [c.strip() for c in line.strip("|").split("|")]
            name, n = label.rstrip(")").rsplit(" (", 1)
            task, metric = labels[name]
            for method, entry in zip(methods, entries):
                value, low, high = map(float, re.match(r"([-+.\d]+) \[([-+.\d]+), ([-+.\d]+)\]", entry).groups())
                key = (scenario, task, "sst2" if task == "sst2" else "refusal", metric, method)
                found[key] = {
                    "difference": value / 100,
                    "ci_low": low / 100,
                    "ci_high": high / 100,
                    "significant": " *" in entry.split(";")[0],
                    "n_pairs": int(n),
                }
    return found


def _cell(d: dict | None) -> str:
    if d is None:
        return "-"
    star = " *" if d["significant"] else ""
    return f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]{star}"


def main(judge: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if judge == "seed0":
            judge, seed0 = "refusal", sorted(p.name for p in GRIDS["b2'"].glob("sst2-*-s0"))
            found = {"b2": _section4(), "b2'": _compare(GRIDS["b2'"], seed0, Path(tmp))}
        else:
            both = sorted(set.intersection(*({p.name for p in g.iterdir()} for g in GRIDS.values())) - {"aligned"})
            found = {name: _compare(folder, both, Path(tmp)) for name, folder in GRIDS.items()}
    tally = dict.fromkeys(["significant on both, same sign", "on both, opposite signs", "on one only", "on neither"], 0)
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
            for b2, b2p in (pair for pair in pairs if all(pair)):
                if b2["significant"] and b2p["significant"]:
                    same = (b2["difference"] > 0) == (b2p["difference"] > 0)
                    tally["significant on both, same sign" if same else "on both, opposite signs"] += 1
                else:
                    tally["on one only" if b2["significant"] or b2p["significant"] else "on neither"] += 1
    print(f"\n{sum(tally.values())} entries: " + ", ".join(f"{n} {what}" for what, n in tally.items()))


if __name__ == "__main__":
    if len(sys.argv) > 2 or (sys.argv[1:] and sys.argv[1] not in ("refusal", "keyword", "seed0")):
        sys.exit(__doc__)
    main(sys.argv[1] if sys.argv[1:] else "refusal")
