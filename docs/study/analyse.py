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

import json
import sys
import tempfile
from datetime import datetime
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


def table(found: dict, columns: list[tuple[str, str]], metrics: list, scenario: str, judge: str, values=False) -> None:
    """Rows: metrics; columns: (header, method) read from `found` (one compare's differences). values: each entry
    starts with the method's rate over all its pairs, and a first column gives the reference's."""
    first = ["reference"] if values else []
    print("| metric (n) | " + " | ".join(first + [h for h, _ in columns]) + " |")
    print("|---|" + "---|" * (len(first) + len(columns)))
    for task, metric, label in metrics:
        key = (scenario, task, "sst2" if task == "sst2" else judge, metric)
        cells = [found.get((*key, m)) for _, m in columns]
        known = [d for d in cells if d]
        if not known:
            continue
        seeds = max(d["seeds"] for d in known)
        texts = [("-" if d is None else f"{100 * d['value']:.1f}, " + entry(d)) if values else entry(d) for d in cells]
        ref = [f"{100 * known[0]['reference']:.1f}"] if values else []
        print(f"| {label} ({known[0]['n_pairs'] // known[0]['seeds']} x {seeds}) | " + " | ".join(ref + texts) + " |")
    print()


SHORT = {"advbench": "AdvBench", "harmbench:test": "HarmBench", "directharm4": "DirectHarm4", "sst2": "SST-2"}
BENCH = ["advbench", "harmbench:test", "directharm4"]  # the three ASR benchmarks of the plan's claims


def pts(d: dict, flip: bool = False) -> str:
    """A difference in points with its interval; flip: the reference minus the method instead."""
    k = -100 if flip else 100
    low, high = sorted((k * d["ci_low"], k * d["ci_high"]))
    return f"{k * d['difference']:+.1f} [{low:+.1f}, {high:+.1f}]".replace("+0.0", "0.0").replace("-0.0", "0.0")


def verdict(d: dict, lower: bool) -> str:
    """yes: significant after Holm in the claimed direction; else no, with Holm's p (or "opposite")."""
    if d["significant"]:
        return "yes" if (d["difference"] < 0) == lower else "opposite"
    return f"no (Holm p {_p(d['p_holm'])})"


def claims(found: dict, judge: str) -> None:
    """The write-up's table: claim in the seed papers / what we measured / significant at 0.05 after Holm."""

    def get(ref, scenario, task, method, metric="asr"):
        return found[ref].get((scenario, task, "sst2" if task == "sst2" else judge, metric, method))

    rows = []
    for scenario, claim in (
        ("benign", "Fine-tuning erodes safety, on benign data (both papers)"),
        ("poisoned", "... and on poisoned data (10% harmful answers)"),
    ):
        ds = {t: get("aligned", scenario, t, "sft") for t in BENCH}
        if None in ds.values():
            continue
        sst2 = get("aligned", scenario, "sst2", "sft", "accuracy")
        refusal = get("aligned", scenario, "benign-selfinstruct", "sft", "benign_refusal_rate")
        rows.append(
            (
                claim,
                "`sft` against the aligned model: "
                + ", ".join(f"{SHORT[t]} {pts(d)}" for t, d in ds.items())
                + (f"; SST-2 {pts(sst2)}" if sst2 else "")
                + (f"; Self-Instruct refusal {pts(refusal)}" if refusal else ""),
                ", ".join(f"{SHORT[t]} {verdict(d, lower=False)}" for t, d in ds.items()),
            )
        )
    cl = [m for m in ("er", "der", "linear", "ewc", "lwf", "grsap")]
    ds = {(s, t, m): get("sft", s, t, m) for s in ("benign", "poisoned") for t in BENCH for m in cl}
    ds = {k: d for k, d in ds.items() if d}
    if ds:
        values = [100 * d["difference"] for d in ds.values()]
        missed = [
            f"{s} {SHORT[t]} `{m}` ({verdict(d, True)})" for (s, t, m), d in ds.items() if verdict(d, True) != "yes"
        ]
        rows.append(
            (
                "CL methods give a lower ASR than plain fine-tuning (seed paper 1)",
                f"{', '.join(f'`{m}`' for m in cl)} against `sft` on the three ASR benchmarks, both scenarios: "
                f"{len(ds)} differences, from {min(values):+.1f} to {max(values):+.1f} points, "
                f"{sum(v > 0 for v in values)} above `sft`",
                f"{len(ds) - len(missed)} of {len(ds)}" + ("; not: " + ", ".join(missed) if missed else ""),
            )
        )
    measured, sig = [], []
    for scenario in ("benign", "poisoned"):
        ds = {t: get("sft", scenario, t, "der") for t in BENCH}
        sst2 = get("sft", scenario, "sst2", "der", "accuracy")
        if None in ds.values() or sst2 is None:
            continue
        tost = sst2["margin"]["result"]
        measured.append(
            f"{scenario}: " + ", ".join(f"{SHORT[t]} {pts(d)}" for t, d in ds.items()) + f", SST-2 {pts(sst2)}"
        )
        safe = sum(verdict(d, True) == "yes" for d in ds.values())
        sig.append(
            f"{scenario}: safety {safe} of 3; TOST at 1.2 points {tost}"
            + (", the loss significant" if sst2["significant"] and sst2["difference"] < 0 else "")
            + (": supported" if safe == 3 and tost == "shown" else ": not supported")
        )
    if measured:
        rows.append(
            (
                "DER keeps safety at under 1.2 points of utility loss (seed paper 1)",
                "`der` against `sft`: " + "; ".join(measured),
                "; ".join(sig),
            )
        )
    measured, sig = [], []
    for scenario in ("benign", "poisoned"):
        ds = {(t, r, g): get(g, scenario, t, r) for t in BENCH for g in ("ewc", "lwf") for r in ("er", "der")}
        if None in ds.values():
            continue
        adv = {k: d for k, d in ds.items() if k[0] == "advbench"}
        rest = {k: d for k, d in ds.items() if k[0] != "advbench"}
        won = sum(verdict(d, True) == "yes" for d in adv.values())
        measured.append(
            f"{scenario}: AdvBench "
            + ", ".join(f"`{r}` - `{g}` {pts(d)}" for (_, r, g), d in adv.items())
            + f"; HarmBench and DirectHarm4 from {min(100 * d['difference'] for d in rest.values()):+.1f} to "
            f"{max(100 * d['difference'] for d in rest.values()):+.1f}"
        )
        sig.append(
            f"{scenario}: AdvBench {won} of 4 ({'supported' if won == 4 else 'not supported'}); HarmBench and "
            f"DirectHarm4 (not the plan's test) {sum(verdict(d, True) == 'yes' for d in rest.values())} of 8"
        )
    if measured:
        rows.append(("Replay ranks above regularization (seed paper 1)", "; ".join(measured), "; ".join(sig)))
    measured, sig = [], []
    for scenario in ("benign", "poisoned"):
        ds = {t: get("er", scenario, t, "grsap") for t in BENCH}
        if None in ds.values():
            continue
        measured.append(f"{scenario}: " + ", ".join(f"{SHORT[t]} {pts(d)}" for t, d in ds.items()))
        sig.append(
            f"{scenario}: AdvBench equivalence at 5 points {ds['advbench']['margin']['result']}; "
            + ", ".join(
                f"{SHORT[t]} difference {verdict(ds[t], lower=False).replace('yes', 'significant')}" for t in BENCH[1:]
            )
        )
    if measured:
        rows.append(
            (
                "Generative replay approaches real-data replay (seed paper 2)",
                "`grsap` against `er`: " + "; ".join(measured),
                "; ".join(sig),
            )
        )
    measured, sig = [], []
    for scenario in ("benign", "poisoned"):
        for base in ("lisa", "safelora"):
            ds = {t: get("der", scenario, t, base) for t in ("directharm4", "harmbench:test")}
            sst2 = get("der", scenario, "sst2", base, "accuracy")
            if None in ds.values() or sst2 is None:
                continue
            measured.append(
                f"{scenario}, `der` - `{base}`: "
                + ", ".join(f"{SHORT[t]} {pts(d, flip=True)}" for t, d in ds.items())
                + f", SST-2 {pts(sst2, flip=True)}"
            )
            sig.append(
                f"{scenario}, against `{base}`: "
                + ", ".join(
                    f"{SHORT[t]} {'yes' if d['significant'] else 'no'}" for t, d in {**ds, "sst2": sst2}.items()
                )
            )
    if measured:
        rows.append(
            (
                "DER outperforms the safety-preserving baselines, SafeLoRA and Lisa (seed paper 1)",
                "; ".join(measured),
                "; ".join(sig),
            )
        )
    print(f"## The claims ({judge} judge; differences in points with their 95% interval)\n")
    print("| claim in the seed papers | what we measured | significant at 0.05 after Holm? |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
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
    print(
        f"## Beside every raw ASR: mean over seeds, %: {judge} raw / without shells / over coherent answers; ", end=""
    )
    print("keyword raw -> Rogan-Gladen corrected\n")
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
    for key, what in (("asr_without_shells", "without shells"), ("asr_coherent", "over coherent answers")):
        moves = [
            (abs(b["asr"]["value"] - b[key]["value"]), run.path.name, task)
            for run in runs
            for task, _, _ in ASR
            for b in [run.result.metrics[task][judge]]
            if (b.get(key) or {}).get("value") is not None
        ]
        most = max(moves)
        print(f"ASR {what} moves from the raw by at most {100 * most[0]:.1f} points in any cell ({most[1]}, {most[2]})")
    for key, what in (("degenerate_share", "degenerate"), ("shell_share", "shells")):
        most = max((run.result.metrics[t][judge][key]["value"], run.path.name, t) for run in runs for t, _, _ in ASR)
        print(f"At most {100 * most[0]:.1f}% of a set's answers are {what} ({most[1]}, {most[2]})")
    print()


def minutes(path: Path) -> float | None:
    """A kept record's own wall time (started_at to finished_at), in minutes; a pause of the sweep counts in it."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    start, end = (datetime.fromisoformat(record[k]) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds() / 60


def wall_time(folder: Path) -> None:
    """Each cell's minutes of training (or merging) + scoring, seed by seed, from its kept training.json and
    results.json."""
    print("## Wall time per cell: minutes of training + scoring, seeds 0 / 1 / 2\n")
    g = SWEEP["grid"]
    print("| method | " + " | ".join(g["scenario"]) + " |")
    print("|---|" + "---|" * len(g["scenario"]))
    total = 0.0
    for method in g["method"]:
        cells = []
        for scenario in g["scenario"]:
            each = []
            for seed in g["seed"]:
                cell = folder / f"sst2-{scenario}-{method}-s{seed}"
                train, score = minutes(cell / "training.json"), minutes(cell / "results.json")
                each.append("-" if score is None else f"{train or 0:.1f} + {score:.1f}")
                total += (train or 0) + (score or 0)
            cells.append(" / ".join(each))
        print(f"| `{method}` | " + " | ".join(cells) + " |")
    print(f"\nIn all: {total / 60:.1f} h over the kept cells (the aligned model's own training and scoring aside)\n")


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
        print(f"## Test 1, {scenario}: every method against the aligned model ({judge} judge; value %, difference)\n")
        table(found["aligned"], [(f"`{m}`", m) for m in methods], METRICS, scenario, judge, values=True)
    for scenario in scenarios:
        print(f"## Tests 2 and 3, {scenario}: every method against `sft` ({judge} judge; SST-2 TOST at 1.2 points)\n")
        table(found["sft"], [(f"`{m}`", m) for m in others], METRICS, scenario, judge, values=True)
        shown = [
            d
            for (sc, task, name, metric, m), d in found["sft"].items()
            if sc == scenario and name in (judge, "sst2") and (task, metric) in {(t, k) for t, k, _ in METRICS}
        ]
        print(f"The seeds disagree in {sum(d['seeds_disagree'] for d in shown)} of these {len(shown)} entries.\n")
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
    claims(found, judge)
    beside(runs, aligned, judge)
    wall_time(folder)
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
