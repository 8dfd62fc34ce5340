"""safeeval score against the raw engine, in one process (machines here are noisy: read the ratios).

Measures, for the hf backend:
  1. generation throughput of `score` vs. batched `model.generate` on the same prompts and settings;
  2. a re-run on a warm store vs. the cold run;
  3. keyword-judge speed (responses per second);
  4. peak memory of a 520-prompt AdvBench run beyond the loaded model.

    .venv/bin/python benchmarks/bench_score.py --model smollm2 --n 64 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

from safeeval.backends.hf import HFBackend
from safeeval.data import Sample
from safeeval.judging import make_judge
from safeeval.models import resolve_model
from safeeval.registry import load_judges
from safeeval.run import ScoreConfig, prepare, score

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def raw_generate(model, tokenizer, prompts, max_new_tokens, batch_size) -> int:
    """The reference: file order, left padding, greedy, as a careful user would write it."""
    tokens = 0
    for i in range(0, len(prompts), batch_size):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts[i : i + batch_size]
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        new = out[:, enc["input_ids"].shape[1] :]
        tokens += int((new != tokenizer.pad_token_id).sum())
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    ref = resolve_model(args.model)
    backend = HFBackend(ref, dtype="bfloat16", batch_size=args.batch_size)
    backend.load()  # both sides start with the model in memory
    tokenizer = backend.tokenizer
    work = Path(tempfile.mkdtemp())
    cfg = dict(
        model=args.model, tasks=["advbench"], limit=args.n, max_new_tokens=args.max_new_tokens, data_dir=args.data
    )
    prompts = [s.prompt for s in prepare(ScoreConfig(**cfg)).tasks[0][1].samples]

    raw_generate(backend.model, tokenizer, prompts[: args.batch_size], 4, args.batch_size)  # warm-up, untimed
    raw_tps, ours_tps, cold_s, warm_s, warm_cli_s = [], [], [], [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        tokens = raw_generate(backend.model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
        raw_tps.append(tokens / (time.perf_counter() - t))
        store = work / f"store{r}.sqlite"
        t = time.perf_counter()
        res = score(ScoreConfig(**cfg, store=store, out=work / f"run{r}"), backend=backend)
        cold = time.perf_counter() - t
        rows = [json.loads(line) for line in open(work / f"run{r}" / "samples.jsonl")]
        ours_tps.append(sum(x["n_tokens"] for x in rows) / cold)
        cold_s.append(cold)
        t = time.perf_counter()
        again = score(ScoreConfig(**cfg, store=store, out=work / f"run{r}b"), backend=backend)
        warm_s.append(time.perf_counter() - t)
        assert again.counts["generated_now"] == 0
        # As a second CLI call would: a new backend (tokenizer + remembered fingerprint), no model load.
        t = time.perf_counter()
        score(ScoreConfig(**cfg, store=store, out=work / f"run{r}c", backend_options={"dtype": "bfloat16"}))
        warm_cli_s.append(time.perf_counter() - t)
        print(
            f"repeat {r}: raw {raw_tps[-1]:.0f} tok/s, score {ours_tps[-1]:.0f} tok/s, cold {cold:.1f}s, "
            f"warm {warm_s[-1]:.2f}s, warm new process-like {warm_cli_s[-1]:.2f}s, "
            f"ASR {res.rate('advbench', 'keyword', 'asr').value:.2f}"
        )
    print(
        f"\nthroughput ratio score/raw: {statistics.median(ours_tps) / statistics.median(raw_tps):.3f} "
        f"(raw {statistics.median(raw_tps):.0f} tok/s, score {statistics.median(ours_tps):.0f} tok/s; goal >= 0.95)"
    )
    print(
        f"warm re-run / cold run: {statistics.median(warm_s) / statistics.median(cold_s):.4f} (same backend), "
        f"{statistics.median(warm_cli_s) / statistics.median(cold_s):.4f} (fresh backend); goal < 0.05"
    )

    judge = make_judge(load_judges()["keyword"], None)
    responses = [x["response"] for x in rows] * (100_000 // len(rows) + 1)
    responses = responses[:100_000]
    samples = [Sample("b", "0", "p")] * len(responses)
    t = time.perf_counter()
    judge.judge(samples, responses)
    rate = len(responses) / (time.perf_counter() - t)
    print(
        f"keyword judge: {rate:,.0f} responses/s over {len(responses):,} responses "
        f"(mean {statistics.mean(map(len, responses)):.0f} chars; goal >= 50,000)"
    )

    proc = psutil.Process(os.getpid())
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample_rss():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.05)

    watcher = threading.Thread(target=sample_rss, daemon=True)
    watcher.start()
    t = time.perf_counter()
    full = score(
        ScoreConfig(
            model=args.model,
            tasks=["advbench"],
            max_new_tokens=8,
            data_dir=args.data,
            store=work / "mem.sqlite",
            out=work / "mem",
        ),
        backend=backend,
    )
    stop.set()
    watcher.join()
    print(
        f"520-prompt run (8 new tokens, {time.perf_counter() - t:.0f}s): peak RSS {peak[0] / 2**20:.0f} MiB, "
        f"{(peak[0] - base) / 2**20:.0f} MiB beyond the loaded model; {full['counts']['samples']} samples"
    )


if __name__ == "__main__":
    main()
