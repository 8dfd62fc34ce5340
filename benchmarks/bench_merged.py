"""Generating through merged weights against an unmerged LoRA adapter and against the raw engine, batch by batch.

    .venv/bin/python benchmarks/bench_merged.py --model smollm2 --limit 16 --data-dir ../shared/data

A real adapter (r=16, all linear layers: a short sft run on SST-2, or `--adapter`) and a study cell's prompts
(advbench, harmbench:test, smoke, benign-selfinstruct, sst2; <= 32 new tokens, greedy, bf16). Three generators in
one process: the hf backend with the adapter merged (the default), the hf backend with it unmerged
(merge_adapter=False, as before), and a bare `model.generate` loop on merged weights (the engine's raw speed).
Every batch of 16 (longest first, as the backend sorts them) runs on all three in turn, the order rotating from
batch to batch, so a busy spell of the shared machine falls on all three alike; times are summed per generator.
Also counted: how many responses merged and unmerged weights give differently (why merging is part of the key).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_engine import chats as cell_chats  # noqa: E402
from benchmarks.bench_engine import make_adapter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--adapter", help="A LoRA adapter of --model; default: a 2-step sft run made here.")
    parser.add_argument("--limit", type=int, default=16, help="Prompts per task (5 tasks).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    import torch

    from safeeval.backends import GenParams, make_backend
    from safeeval.backends.hf import tokenize

    chats = cell_chats(args)
    params = GenParams(max_new_tokens=32)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.adapter or make_adapter(args, Path(tmp))
        merged = make_backend("hf", args.model, adapter=adapter, batch_size=args.batch_size)
        unmerged = make_backend("hf", args.model, adapter=adapter, batch_size=args.batch_size, merge_adapter=False)
        merged.load()
        unmerged.load()
    tok = merged.tokenizer
    ids = [tokenize(tok, c, merged.render(c)) for c in chats]
    order = sorted(range(len(chats)), key=lambda i: -len(ids[i]))

    def raw(batch):
        enc = tok.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
        with torch.inference_mode():
            merged.model.generate(**enc, max_new_tokens=32, do_sample=False, pad_token_id=tok.pad_token_id)

    def through(backend):
        return lambda batch: {c.index: c.text for g in backend.generate([chats[i] for i in batch], params) for c in g}

    runners = {"merged": through(merged), "unmerged": through(unmerged), "raw": raw}
    spent = {name: [0.0, 0.0] for name in runners}
    texts = {"merged": [], "unmerged": []}
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    for k, batch in enumerate(batches):
        names = list(runners)
        for name in names[k % 3 :] + names[: k % 3]:
            wall, cpu = time.perf_counter(), time.process_time()
            got = runners[name](batch)
            spent[name][0] += time.perf_counter() - wall
            spent[name][1] += time.process_time() - cpu
            if name in texts:
                texts[name] += [got[i] for i in range(len(batch))]
    differ = sum(a != b for a, b in zip(texts["merged"], texts["unmerged"], strict=True))
    report = {
        "prompts": len(chats),
        "batches": len(batches),
        "seconds": {n: {"wall": round(w, 1), "cpu": round(c, 1)} for n, (w, c) in spent.items()},
        "merged_vs_raw": {c: round(spent["merged"][i] / spent["raw"][i], 3) for i, c in enumerate(("wall", "cpu"))},
        "unmerged_vs_raw": {c: round(spent["unmerged"][i] / spent["raw"][i], 3) for i, c in enumerate(("wall", "cpu"))},
        "unmerged_vs_merged": {
            c: round(spent["unmerged"][i] / spent["merged"][i], 3) for i, c in enumerate(("wall", "cpu"))
        },
        "responses_that_differ_merged_vs_unmerged": differ,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
