"""Throughput of the model-free `refusal` classifier (goal: >= 10,000 responses/s), on two corpora:

    .venv/bin/python benchmarks/bench_xstest.py --n 20 --repeats 5

  * annotated: XSTest's 1,350 human-labelled completions (gpt4, llama2orig, mistralinstruct; real refusals and
    answers, 682 characters on average), repeated --copies times;
  * synthetic: 450 XSTest prompts x --n responses built from templates of each class, short and long.
Each corpus is judged --repeats times by RefusalJudge.judge and, as a reference in the same process, by the keyword
judge (one regex per response). Prints the best wall-clock rate, the rate per CPU-second (steadier on a shared
machine: other processes do not count) and refusal/keyword. No model, no store: the classifiers alone.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

FILLER = ("This depends on the context, and there are a few things worth knowing first. " * 4).strip()
TEMPLATES = [
    'Sure! Here is an answer to "{p}".\n1. First, consider the basics.\n2. Then apply them.\n' + FILLER,
    "{p} is a common question. " + " ".join([FILLER] * 6),  # long compliance, ~300 words
    "I'm sorry, but I can't help with that.",
    "That's not something I can help with. If you need support, please contact a professional.",
    'As an AI language model, I cannot assist with "{p}". It is harmful and unethical.',
    "I cannot provide that, but here is some general information: " + FILLER,
    'Here is some background on "{p}". ' + FILLER + " However, I can't provide specific instructions.",
    'I\'m sorry to hear that. Here is how to approach "{p}": ' + FILLER,
]


def annotated(data: Path, copies: int) -> list[str]:
    texts = []
    for path in sorted((data / "xstest" / "completions").glob("xstest_v2_completions_*.csv")):
        if path.stem.endswith(("_gpteval", "_streval")):
            continue
        with open(path, encoding="utf-8", newline="") as f:
            texts += [row["completion"] for row in csv.DictReader(f)]
    return texts * copies


def synthetic(data: Path, n: int) -> list[str]:
    with open(data / "xstest" / "xstest_prompts.csv", encoding="utf-8", newline="") as f:
        prompts = [row["prompt"] for row in csv.DictReader(f)]
    return [TEMPLATES[(i + k) % len(TEMPLATES)].format(p=p) for i, p in enumerate(prompts) for k in range(n)]


def rates(judge, samples, responses, repeats: int) -> tuple[float, float, list]:
    """(best responses per wall second, best per CPU second, the verdicts)."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        verdicts = judge.judge(samples, responses)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return len(responses) / min(wall), len(responses) / min(cpu), verdicts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20, help="synthetic responses per prompt")
    ap.add_argument("--copies", type=int, default=5, help="copies of the 1,350 annotated completions")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from safeeval import registry
    from safeeval.data import Sample
    from safeeval.judging import make_judge
    from safeeval.judging.refusal import RefusalJudge

    refusal, keyword = RefusalJudge("refusal", {}), make_judge(registry.load_judges()["keyword"], None)
    corpora = (("annotated", annotated(args.data, args.copies)), ("synthetic", synthetic(args.data, args.n)))
    for name, responses in corpora:
        samples = [Sample("xstest", str(i), "") for i in range(len(responses))]
        wall, cpu, verdicts = rates(refusal, samples, responses, args.repeats)
        k_wall, k_cpu, _ = rates(keyword, samples, responses, args.repeats)
        chars = sum(map(len, responses)) / len(responses)
        print(f"{name}: {len(responses)} responses, {chars:.0f} characters mean")
        print(f"  refusal: {wall:,.0f} responses/s (best of {args.repeats}), {cpu:,.0f} per CPU-second")
        print(f"  keyword: {k_wall:,.0f} responses/s, {k_cpu:,.0f} per CPU-second; refusal/keyword {cpu / k_cpu:.3f}")
        print(
            "  classes:",
            dict(sorted(Counter(v.extra["class"] for v in verdicts).items())),
            "rules:",
            dict(Counter(v.extra["rule"] for v in verdicts).most_common()),
        )


if __name__ == "__main__":
    main()
