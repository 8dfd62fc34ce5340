"""Batches capped at twice a prompt's length against fixed-size batches, on a study cell's mix of prompts.

    .venv/bin/python benchmarks/bench_batching.py --model smollm2 --limit 32 --batch-size 64 --data-dir ../shared/data

A cell's tasks (AdvBench, HarmBench test, DirectHarm4, XSTest, Self-Instruct, SST-2; --limit prompts of each, the
seeded subset) mix a few long prompts (HarmBench's contexts, up to about 1,350 tokens) with many short ones. The hf
backend sorts them longest first either way; fixed batches pad each batch to its longest prompt, capped batches
(the default, hf.MAX_PADDING = 2) end a batch before a prompt under half its longest. One process, one loaded
model, the two ways alternating round by round (so a busy spell of the shared machine falls on both); greedy, bf16.
Also counted: responses that differ between the two (bfloat16 arithmetic on other batch shapes).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = ["advbench", "harmbench:test", "directharm4", "xstest", "benign-selfinstruct", "sst2"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--limit", type=int, default=32, help="Prompts per task (6 tasks).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()

    from safeeval.backends import GenParams, hf, make_backend
    from safeeval.config import ScoreConfig
    from safeeval.run import _chat, prepare

    settings = {"model": args.model, "tasks": TASKS, "limit": args.limit, "data_dir": Path(args.data_dir)}
    prep = prepare(ScoreConfig.from_settings(settings))
    chats = [_chat(s, None) for _, got, _ in prep.tasks for s in got.samples]
    backend = make_backend("hf", args.model, batch_size=args.batch_size)
    backend.load()
    params = GenParams(max_new_tokens=args.max_new_tokens)
    ways = {"fixed": math.inf, "capped": hf.MAX_PADDING}
    seconds, texts, counts = {w: 0.0 for w in ways}, {}, {}
    for r in range(args.rounds):
        for way in list(ways)[r % 2 :] + list(ways)[: r % 2]:
            hf.MAX_PADDING = ways[way]
            started = time.perf_counter()
            groups = list(backend.generate(chats, params))
            seconds[way] += time.perf_counter() - started
            texts[way] = {c.index: c.text for g in groups for c in g}
            counts[way] = len(groups)
    differ = sum(texts["fixed"][i] != texts["capped"][i] for i in texts["fixed"])
    print(f"{len(chats)} prompts, batch {args.batch_size}, {args.max_new_tokens} new tokens, {args.rounds} rounds each")
    for way in ways:
        print(f"{way}: {counts[way]} batches, {seconds[way] / args.rounds:.1f} s a round")
    print(f"capped / fixed time: {seconds['capped'] / seconds['fixed']:.2f}; responses that differ: {differ}")


if __name__ == "__main__":
    main()
