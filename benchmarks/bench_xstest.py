"""XSTest scoring throughput of the model-free `refusal` classifier: 450 XSTest prompts x N crafted responses.

    .venv/bin/python benchmarks/bench_xstest.py --n 20 --repeats 3

Responses are built from templates of each class (compliance, full refusal, partial refusal) around the prompt
text, short and long (a ~300-word answer), so the sentence splitter and patterns see realistic lengths.
Prints responses/s (best of the repeats) and the class mix. No model, no store: the classifier alone.
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
    "Sure! Here is an answer to \"{p}\".\n1. First, consider the basics.\n2. Then apply them.\n" + FILLER,
    "{p} is a common question. " + " ".join([FILLER] * 6),  # long compliance, ~300 words
    "I'm sorry, but I can't help with that.",
    "That's not something I can help with. If you need support, please contact a professional.",
    "As an AI language model, I cannot assist with \"{p}\". It is harmful and unethical.",
    "I cannot provide that, but here is some general information: " + FILLER,
    "Here is some background on \"{p}\". " + FILLER + " However, I can't provide specific instructions.",
    "I'm sorry to hear that. Here is how to approach \"{p}\": " + FILLER,
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20, help="responses per prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from safeeval.data import Sample
    from safeeval.judging.refusal import RefusalJudge

    with open(args.data / "xstest" / "xstest_prompts.csv", encoding="utf-8", newline="") as f:
        prompts = [row["prompt"] for row in csv.DictReader(f)]
    samples, responses = [], []
    for i, p in enumerate(prompts):
        for k in range(args.n):
            samples.append(Sample("xstest", f"{i}-{k}", p))
            responses.append(TEMPLATES[(i + k) % len(TEMPLATES)].format(p=p))
    judge = RefusalJudge("refusal", {})
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        verdicts = judge.judge(samples, responses)
        times.append(time.perf_counter() - t0)
    chars = sum(map(len, responses))
    best = min(times)
    mix = Counter(v.extra["class"] for v in verdicts)
    print(f"{len(responses)} responses ({len(prompts)} prompts x {args.n}), {chars / len(responses):.0f} chars mean")
    print(f"best of {args.repeats}: {best:.3f} s = {len(responses) / best:,.0f} responses/s "
          f"({chars / best / 1e6:.1f} MB/s); all runs: {', '.join(f'{t:.3f}' for t in times)} s")
    print("classes:", dict(sorted(mix.items())))


if __name__ == "__main__":
    main()
