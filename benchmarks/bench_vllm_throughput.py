"""How much VLLMBackend costs over calling vLLM directly, on one shared engine.

    .venv/bin/python benchmarks/bench_vllm_throughput.py --model PATH --n 32 --max-new-tokens 64

Loads one vllm.LLM, then alternates raw `LLM.chat(chats, SamplingParams)` with
`VLLMBackend.generate` on the same engine and the same N AdvBench prompts (greedy), and prints
generated tokens/s of each and their ratio (goal: backend/raw >= 0.95).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "advbench" / "harmful_behaviors.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder, GGUF file or alias (as safeeval takes it)")
    parser.add_argument("--n", type=int, default=32, help="number of AdvBench prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV with a 'goal' column")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds of each, alternating")
    parser.add_argument("--enforce-eager", action="store_true", help="skip graph compilation (faster start)")
    args = parser.parse_args()

    import os

    import torch
    from transformers import AutoConfig

    from safeeval.backends.base import GenParams
    from safeeval.backends.hf import resolve_dtype
    from safeeval.backends.vllm import _CPU_KV_CACHE_GIB, VLLMBackend
    from safeeval.models import resolve_model

    with open(args.data, newline="") as f:
        goals = [row["goal"] for row in csv.DictReader(f)][: args.n]
    chats = [[{"role": "user", "content": g}] for g in goals]
    model = resolve_model(args.model)
    config = AutoConfig.from_pretrained(model.path)
    dtype = resolve_dtype(args.dtype, getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", _CPU_KV_CACHE_GIB)

    import vllm
    from vllm import SamplingParams

    start = time.perf_counter()
    llm = vllm.LLM(model=str(model.path), dtype=dtype, enforce_eager=args.enforce_eager)
    load_s = time.perf_counter() - start
    backend = VLLMBackend.from_llm(llm, model)
    sampling = SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0)
    params = GenParams(max_new_tokens=args.max_new_tokens)

    def raw() -> int:
        outs = llm.chat(chats, sampling, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    def ours() -> int:
        # n_tokens leaves out the EOS that ended an answer; vLLM's token_ids keep it: count it back.
        return sum(c.n_tokens + (c.finish_reason == "stop") for chunk in backend.generate(chats, params) for c in chunk)

    import json
    import tempfile

    import yaml

    from safeeval.run import ScoreConfig, score

    work = Path(tempfile.mkdtemp())
    (work / "specs").mkdir()
    (work / "specs" / "bench.yaml").write_text(
        yaml.safe_dump({"name": "bench", "prompt": "{{ goal }}", "inline": [{"goal": g} for g in goals]})
    )
    rounds = iter(range(1_000_000))

    def whole_run() -> int:
        """`safeeval score` as the CLI runs it (render, store, judge, results), on a fresh store each time."""
        r = next(rounds)
        score(
            ScoreConfig(
                model=args.model,
                tasks=["bench"],
                tasks_dirs=[work / "specs"],
                max_new_tokens=args.max_new_tokens,
                store=work / f"store{r}.sqlite",
                out=work / f"run{r}",
            ),
            backend=backend,
        )
        rows = [json.loads(line) for line in open(work / f"run{r}" / "samples.jsonl")]
        return sum(x["n_tokens"] + (x["finish_reason"] == "stop") for x in rows)

    raw(), ours()  # warm-up: first-call allocations, caches
    rates: dict[str, list[float]] = {"raw LLM.chat": [], "VLLMBackend": [], "safeeval score": []}
    tokens: dict[str, int] = {}
    for _ in range(args.repeats):
        for label, fn in (("raw LLM.chat", raw), ("VLLMBackend", ours), ("safeeval score", whole_run)):
            t0 = time.perf_counter()
            n = fn()
            rates[label].append(n / (time.perf_counter() - t0))
            tokens[label] = n

    print(
        f"model {model.path} dtype {dtype} | engine load {load_s:.1f} s | {len(chats)} prompts, "
        f"max_new_tokens {args.max_new_tokens}, {args.repeats} rounds each, alternating"
    )
    for label, values in rates.items():
        print(
            f"  {label:14s} {tokens[label]:6d} tokens/round   "
            + "  ".join(f"{v:8.1f}" for v in values)
            + f"   tokens/s   (best {max(values):.1f})"
        )
    for label in ("VLLMBackend", "safeeval score"):
        ratio = max(rates[label]) / max(rates["raw LLM.chat"])
        print(f"  ratio {label}/raw (best of each): {ratio:.3f}  {'OK' if ratio >= 0.95 else 'BELOW 0.95'}")
    llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    main()
