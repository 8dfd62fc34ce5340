"""Agreement of the model-free judges with people, on both shipped label sets, beside the published labellers.

    .venv/bin/python benchmarks/bench_judge_agreement.py --data ../shared/data

Runs `keyword` and `refusal` through safeeval's own validation (safeeval.validate, the code behind
`safeeval judge validate`, with a throwaway store) on
  * xstest-completions, per annotated file and pooled: 3-class agreement with XSTest's final_label and Cohen's kappa,
    beside the automated labels the XSTest authors published for the same responses (their string match, which has
    only two classes but is scored against the three human ones, as the keyword judge is; and GPT-4 with their
    prompt). mistralinstruct is the file held out while the refusal rules were written (refusal_rules.py).
  * harmbench-val: agreement with the majority of three people on harmful / not harmful, beside the labels HarmBench
    recorded for the same generations (its Llama-2-13b classifier, Llama Guard, GPT-4).
Prints Markdown tables. No model is loaded; it takes seconds.
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = "mistralinstruct"  # fixed before the held-out file was scored (commit 74c315b)
PUBLISHED = {"string match (2 classes)": ("streval", "strmatch_label"), "GPT-4": ("gpteval", "gpt4_label")}
HARMBENCH_RECORDED = {"HarmBench cls (Llama-2-13b)": "cls", "Llama Guard": "llama_guard", "GPT-4 (0613)": "gpt-4-0613"}


def published(data: Path, split: str, suffix: str, column: str) -> dict[str, str]:
    """The XSTest authors' automated label of each response, by the label set's sample id."""
    path = data / "xstest" / "completions" / f"xstest_v2_completions_{split}_{suffix}.csv"
    with open(path, encoding="utf-8", newline="") as f:
        # GPT-4 declined to label a few responses ("I'm sorry, but I can't assist with that."): no class, a miss
        return {
            f"xstest_v2_completions_{split}:{row['id']}": re.sub(r"^\d_", "", row[column])
            if re.match(r"^\d_", row[column])
            else "no_label"
            for row in csv.DictReader(f)
        }


def scored(truth: list[str], pred: list[str], classes) -> tuple[float, float | None, int]:
    from safeeval.metrics import agreement

    stats = agreement(truth, pred, (*classes, "no_label"))
    return stats["agreement"], stats["cohen_kappa"], stats["n"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from safeeval import labels, registry
    from safeeval.judging import JudgeRuntime, make_judge
    from safeeval.store import Store
    from safeeval.validate import validate

    store = Store(Path(tempfile.mkdtemp()) / "store.sqlite")
    judges = {
        name: make_judge(registry.load_judges()[name], None, JudgeRuntime(store=store))
        for name in ("keyword", "refusal")
    }

    def fmt(agreement, kappa, n=None) -> str:
        k = "-" if kappa is None else f"{kappa:.3f}"
        return f"{agreement:.3f} (κ {k})" + (f", n {n}" if n is not None else "")

    spec, _ = labels.resolve("xstest-completions")
    print("XSTest completions: 3-class agreement with final_label (Cohen's kappa)\n")
    print("| completions | `refusal` | `keyword` | " + " | ".join(PUBLISHED) + " |")
    print("|---|---|---|" + "---|" * len(PUBLISHED))
    pooled: dict[str, tuple[list, list]] = {}
    for split in [*spec.splits, None]:
        labelled = labels.load(spec, split, args.data)
        row = [f"{split}{' (held out)' if split == HELD_OUT else ''}" if split else "**pooled**"]
        for name in ("refusal", "keyword"):
            report = validate(judges[name], store, labelled)
            row.append(fmt(report["agreement"], report["cohen_kappa"]))
        for title, (suffix, column) in PUBLISHED.items():
            if split is None:
                truth, pred = pooled[title]
            else:
                theirs = published(args.data, split, suffix, column)
                truth, pred = labelled.truth, [theirs[s.id] for s in labelled.samples]
                pooled.setdefault(title, ([], []))[0].extend(truth)
                pooled[title][1].extend(pred)
            row.append(fmt(*scored(truth, pred, labelled.classes)[:2]))
        print("| " + " | ".join(row) + " |")

    labelled = labels.load(*labels.resolve("harmbench-val"), args.data)
    print("\nHarmBench classifier validation set: agreement with the majority of three people (Cohen's kappa)\n")
    print("| judge | agreement | tp / fp / tn / fn |")
    print("|---|---|---|")
    for name in ("keyword", "refusal"):
        r = validate(judges[name], store, labelled)
        counts = " / ".join(str(r[k]) for k in ("tp", "fp", "tn", "fn"))
        print(f"| `{name}` | {fmt(r['agreement'], r['cohen_kappa'], r['n'])} | {counts} |")
    for title, column in HARMBENCH_RECORDED.items():
        pred = [
            "harmful" if str(s.meta["source_labels"][column]).strip() == "1" else "not_harmful"
            for s in labelled.samples
        ]
        print(f"| {title}, as HarmBench recorded it | {fmt(*scored(labelled.truth, pred, labelled.classes))} | |")
    store.close()


if __name__ == "__main__":
    main()
