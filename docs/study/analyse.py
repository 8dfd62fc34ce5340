"""PLAN.md's analysis of one kept grid, as PLAN.md fixes it: every table the write-up's sections 3 and 4 read.

    python docs/study/analyse.py                    # the grid from b2' (other-cpu/), refusal judge (the primary)
    python docs/study/analyse.py keyword            # the same tests under the keyword judge
    python docs/study/analyse.py refusal cells      # the grid from b2 (cells/)

Tests (PLAN.md, "Tests"; each through `safeeval compare`'s own function, seeds as strata, Holm over the methods
compared against one reference on one metric within one scenario):
1. erosion: every method against the aligned model;
2. and 3. every method against `sft`, SST-2 with a non-inferiority TOST at 1.2 points;
4. `er` and `der` against `ewc` and against `lwf` (AdvBench is the plan's; HarmBench and DirectHarm4 shown beside);
5. `grsap` against `er`, AdvBench equivalence at +-5 points;
6. `safelora` and `lisa` against `er` and against `der`.
Then, beside every raw ASR: ASR without shells, over coherent answers, and the keyword judge's Rogan-Gladen
corrected ASR, each method's mean over its seeds. The first lines name any cell of the grid not kept yet.

An entry: method - reference in points [95% interval], the stratified CMH p, Holm's p (left out when it equals p);
* significant at 0.05 after Holm; "seeds disagree" where the seeds' differences are heterogeneous.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml
from kept import HERE, METRICS, differences, load

SWEEP = yaml.safe_load((HERE.parents[1] / "configs/study.yaml").read_text())
ORDER = SWEEP["grid"]["method"]
ASR = [m for m in METRICS if m[1] == "asr" and m[0] != "xstest"] + [("xstest", "asr", "XSTest unsafe complied")]


def _p(p: float) -> str:
    if p < 1e-4:
        return "< 0.0001"
    return f"{p:.2f}" if p >= 0.1 else f"{p:.2g}"


def entry(d: dict | None) -> str:
    if d is None:
        return "-"
    p, holm = _p(d["p"]), _p(d["p_holm"])
    text = f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]".replace("+0.0", "0.0")
    text += f", p {p}" + (f", Holm {holm}" if holm != p else "") + (" *" if d["significant"] else "")
    if d.get("margin"):
        m = d["margin"]
        text += f"; TOST {100 * m['margin']:g}: {m['result']}"
    return text + ("; seeds disagree" if d["seeds_disagree"] else "")


def table(found: dict, columns: list[tuple[str, str]], metrics: list, scenario: str, judge: str) -> None:
    """Rows: metrics; columns: (header, method) read from `found` (one compare's differences)."""
    print("| metric (n) | " + " | ".join(h for h, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for task, metric, label in metrics:
        key = (scenario, task, "sst2" if task == "sst2" else judge, metric)
        cells = [found.get((*key, m)) for _, m in columns]
        n = next((d["n_pairs"] for d in cells if d), None)
        if n is None:
            continue
        seeds = max(d["seeds"] for d in cells if d)
        print(f"| {label} ({n // seeds} x {seeds}) | " + " | ".join(entry(d) for d in cells) + " |")
    print()


def missing(folder: Path) -> list[str]:
    g = SWEEP["grid"]
    cells = [f"sst2-{s}-{m}-s{seed}" for seed in g["seed"] for m in g["method"] for s in g["scenario"]]
    return [c for c in ["aligned", *cells] if not (folder / c / "results.json").exists()]


def beside(runs: list, aligned, judge: str) -> None:
    """Each method's mean over its seeds: raw ASR / without shells / over coherent answers, then the keyword
    judge's raw and Rogan-Gladen corrected ASR (PLAN.md, "Measurements")."""
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        groups.setdefault(("-", "-") if run is aligned else (run.scenario, run.method), []).append(run)
    print(f"Mean over seeds, %: {judge} raw / without shells / over coherent answers; keyword raw -> corrected\n")
    print("| scenario | method | seeds | " + " | ".join(label for _, _, label in ASR) + " |")
    print("|---|---|---|" + "---|" * len(ASR))

    def mean(group, task, name, key):
        values = [(r.result.metrics[task][name].get(key) or {}).get("value") for r in group]
        return None if None in values else 100 * sum(values) / len(values)

    def fmt(v):
        return "-" if v is None else f"{v:.1f}"

    order = sorted(groups, key=lambda k: (k[0] != "-", k[0], ORDER.index(k[1]) if k[1] in ORDER else -1))
    for scenario, method in order:
        group = groups[(scenario, method)]
        cells = []
        for task, _, _ in ASR:
            ours = [fmt(mean(group, task, judge, k)) for k in ("asr", "asr_without_shells", "asr_coherent")]
            kw = [fmt(mean(group, task, "keyword", k)) for k in ("asr", "asr_corrected")]
            cells.append(" / ".join(ours) + "; " + " -> ".join(kw))
        name = "aligned" if method == "-" else f"`{method}`"
        print(f"| {scenario} | {name} | {len(group)} | " + " | ".join(cells) + " |")
    print()


def main(judge: str, grid: str) -> None:
    folder = HERE / grid
    gone = missing(folder)
    cells = sorted(p.name for p in folder.iterdir() if (p / "results.json").exists())
    print(f"# PLAN.md's analysis of {grid}/: {len(cells)} of 55 steps kept (54 cells and the aligned model)")
    print("Not kept yet: " + (", ".join(gone) if gone else "none") + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        runs = load(folder, cells, Path(tmp))
        aligned = next(r for r in runs if r.path.name == "aligned")
        found = {
            "aligned": differences(runs, str(aligned.path)),
            "sft": differences(runs, "sft", margins={"sst2": 0.012}),
            "ewc": differences(runs, "ewc"),
            "lwf": differences(runs, "lwf"),
            "er": differences(runs, "er", margins={"advbench": 0.05}, equivalence=True),
            "der": differences(runs, "der"),
        }
    fine = [r for r in runs if r is not aligned]
    scenarios = sorted({r.scenario for r in fine})
    methods = sorted({r.method for r in fine}, key=ORDER.index)
    others = [m for m in methods if m != "sft"]
    for scenario in scenarios:
        print(f"## Test 1, {scenario}: every method against the aligned model ({judge} judge)\n")
        table(found["aligned"], [(f"`{m}`", m) for m in methods], METRICS, scenario, judge)
    for scenario in scenarios:
        print(f"## Tests 2 and 3, {scenario}: every method against `sft` ({judge} judge; SST-2 TOST at 1.2 points)\n")
        table(found["sft"], [(f"`{m}`", m) for m in others], METRICS, scenario, judge)
    for scenario in scenarios:
        print(f"## Test 4, {scenario}: replay against regularization (AdvBench is the plan's test)\n")
        cols = [f"`{r}` - `{g}`" for g in ("ewc", "lwf") for r in ("er", "der")]
        rows = ASR[:3] + [m for m in METRICS if m[0] == "sst2"]
        print("| metric | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for task, metric, label in rows:
            key = (scenario, task, "sst2" if task == "sst2" else judge, metric)
            cells = [found[g].get((*key, r)) for g in ("ewc", "lwf") for r in ("er", "der")]
            print(f"| {label} | " + " | ".join(entry(d) for d in cells) + " |")
        advbench = [
            found[g].get((scenario, "advbench", judge, "asr", r)) for g in ("ewc", "lwf") for r in ("er", "der")
        ]
        won = sum(bool(d and d["significant"] and d["difference"] < 0) for d in advbench)
        print(
            f"\nAdvBench: replay significantly lower in {won} of 4: " + ("supported" if won == 4 else "not supported")
        )
        print()
    for scenario in scenarios:
        print(f"## Tests 5 and 6, {scenario}: against `er` (AdvBench equivalence at +-5 points for `grsap`)\n")
        table(
            found["er"],
            [(f"`{m}`", m) for m in ("grsap", "safelora", "lisa") if m in methods],
            METRICS,
            scenario,
            judge,
        )
        print(f"## Test 6, {scenario}: against `der`\n")
        table(found["der"], [(f"`{m}`", m) for m in ("safelora", "lisa") if m in methods], METRICS, scenario, judge)
    beside(runs, aligned, judge)
    example = found["sft"].get((scenarios[0], "advbench", judge, "asr", others[0]))
    print(
        "Each Holm family: the methods compared against one reference on one metric within one scenario, e.g. "
        + (example["family"] if example else "-")
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    judge = args[0] if args else "refusal"
    grid = args[1] if len(args) > 1 else "other-cpu"
    if len(args) > 2 or judge not in ("refusal", "keyword") or grid not in ("other-cpu", "cells"):
        sys.exit(__doc__)
    main(judge, grid)
