"""Scoring cost of the GSM8K and MATH scorers: milliseconds to score 1,000 answers, beside lm-eval's own code on
the same answers (regex filters + exact_match for GSM8K; hendrycks_math's string is_equiv for MATH).

The answers are crafted from the real test problems (right, wrong, messy and unanswered, in the shapes chat models
write), so the figures hold for real runs. Each round scores every answer once, with math-verify's and our parse
caches cleared first: a real run parses each answer once.

    .venv/bin/python benchmarks/bench_scoring.py --n 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def gsm8k_answers(samples, n: int, rng: random.Random) -> list[tuple[object, str]]:
    shapes = [
        lambda g, w: f"First we work out the parts: 12 * 3 = 36 and 36 - 4 = 32.\nAdding up gives {g}.\n#### {g}",
        lambda g, w: f"So the total is ${g}.\n#### {g}",
        lambda g, w: f"Step 1: 5 + 7 = 12.\nStep 2: 12 * 2 = 24.\nThe answer is {g}.",
        lambda g, w: f"She pays 3 * $4.50 = $13.50 in total, then 20 more.\n#### {w}",
        lambda g, w: f"#### {g}\nCheck: 9 * 2 = 18, 16 - 7 = 9.",
        lambda g, w: "I am not able to work this out from the information given.",
        lambda g, w: (
            f"Let x be the number. Then 2x + 6 = {2 * int(w) + 6 if w.lstrip('-').isdigit() else 10}, so x = {w}."
        ),
        lambda g, w: f"The answer is **{g}**.",
    ]
    out = []
    for i in range(n):
        s = samples[i % len(samples)]
        gold = s.target
        wrong = (
            str(int(gold.replace(",", "")) + rng.randint(1, 9)) if gold.replace(",", "").lstrip("-").isdigit() else "7"
        )
        out.append((s, shapes[i % len(shapes)](gold, wrong)))
    return out


def math_answers(samples, n: int, rng: random.Random) -> list[tuple[object, str]]:
    from safeeval.scoring.math import gold_answer

    shapes = [
        lambda g: f"We simplify step by step.\nThus the answer is $\\boxed{{{g}}}$.",
        lambda g: f"Combining the cases, we get $\\boxed{{{g}}}$, as claimed.",
        lambda g: f"First I got $\\boxed{{0}}$, but that double counts, so the answer is $\\boxed{{{g}}}$.",
        lambda g: f"The answer is ${g}$.",  # no box: unparsed
        lambda g: f"Therefore the result is $\\boxed{{{g} + 1}}$.",  # wrong
        lambda g: (
            "So the answer is $\\boxed{\\frac{" + str(rng.randint(2, 40)) + "}{" + str(rng.randint(41, 99)) + "}}$."
        ),
    ]
    out = []
    for i in range(n):
        s = samples[i % len(samples)]
        out.append((s, shapes[i % len(shapes)](gold_answer(s.target))))
    return out


def clear_caches() -> None:
    import math_verify.parser as mvp

    from safeeval.scoring import math as ours

    ours._parse.cache_clear()
    for name in dir(mvp):
        fn = getattr(mvp, name)
        if callable(getattr(fn, "cache_clear", None)):
            fn.cache_clear()


def timed(fn, pairs) -> float:
    clear_caches()
    t = time.perf_counter()
    fn(pairs)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    import importlib

    import yaml
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    from safeeval import data, registry
    from safeeval.scoring.gsm8k import GSM8KScorer
    from safeeval.scoring.math import MathScorer, gold_answer

    specs = registry.load_tasks()
    rng = random.Random(0)
    gsm = gsm8k_answers(data.load(specs["gsm8k"], None, args.data).samples, args.n, rng)
    mth = math_answers(data.load(specs["math-full"], None, args.data).samples, args.n, rng)

    g_scorer, m_scorer = GSM8KScorer("gsm8k", {}), MathScorer("math", {})
    cfg = yaml.safe_load(
        (Path(importlib.import_module("lm_eval").__file__).parent / "tasks/gsm8k/gsm8k.yaml").read_text()
    )
    em_kwargs = {
        k: v for k, v in cfg["metric_list"][0].items() if k not in ("metric", "aggregation", "higher_is_better")
    }
    filters = [RegexFilter(**{k: v for k, v in f["filter"][0].items() if k != "function"}) for f in cfg["filter_list"]]
    h = importlib.import_module("lm_eval.tasks.hendrycks_math.utils")

    def ours(scorer):
        return lambda pairs: [scorer.score_one(s, r) for s, r in pairs]

    def lm_gsm8k(pairs):
        refs = [f"x\n#### {s.target}" for s, _ in pairs]
        for f in filters:
            picked = [x[0] for x in f.apply([[r] for _, r in pairs], None)]
            [exact_match_hf_evaluate(predictions=[p], references=[ref], **em_kwargs) for p, ref in zip(picked, refs)]

    def lm_math(pairs):
        for s, r in pairs:
            boxed = h.last_boxed_only_string(r)
            boxed is not None and h.is_equiv(h.remove_boxed(boxed), gold_answer(s.target))

    rows = []
    for label, pairs, fn in (
        ("gsm8k  safeeval", gsm, ours(g_scorer)),
        ("gsm8k  lm-eval filters+exact_match", gsm, lm_gsm8k),
        ("math   safeeval (math-verify)", mth, ours(m_scorer)),
        ("math   lm-eval hendrycks is_equiv", mth, lm_math),
    ):
        times = [timed(fn, pairs) for _ in range(args.repeats)]
        rows.append((label, 1000 * statistics.median(times) * 1000 / len(pairs), 1000 * min(times) * 1000 / len(pairs)))

    verdicts = [v.as_dict() for v in m_scorer.judge([s for s, _ in mth], [r for _, r in mth])]
    print(f"{args.n} answers per task, {args.repeats} rounds, caches cleared before each round")
    print(
        f"math answers: {sum(v['status'] == 'unparsed' for v in verdicts)} unparsed, "
        f"{sum(v['score'] == 1.0 for v in verdicts)} right"
    )
    print(f"{'scorer':40} {'ms / 1,000 (median)':>20} {'(best)':>10}")
    for label, med, best in rows:
        print(f"{label:40} {med:20.1f} {best:10.1f}")


if __name__ == "__main__":
    main()
