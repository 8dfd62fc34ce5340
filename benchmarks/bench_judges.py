"""Model judges against the raw engine on the same judge prompts, in one process; and a warm re-judge.

    .venv/bin/python benchmarks/bench_judges.py --judge harmbench-cls --model smollm2 --backend hf --n 64
    .venv/bin/python benchmarks/bench_judges.py --judge harmbench-cls --model smollm2 --backend vllm --n 64

The judge model here is only a stand-in (no classifier can be downloaded on these machines): what is
measured is the machinery around the engine - prompt building, the store, parsing - not verdict quality.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--judge", default="harmbench-cls")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    import torch

    from safeeval import labels, registry
    from safeeval.backends.hf import tokenize
    from safeeval.judging import JudgeRuntime, make_judge
    from safeeval.judging.model import neutralize
    from safeeval.store import Store

    labelled = labels.load(*labels.resolve("harmbench-val"), args.data)
    samples, responses = labelled.samples, labelled.responses
    samples, responses = samples[: args.n], responses[: args.n]
    work = Path(tempfile.mkdtemp())
    spec, variant = registry.pick(registry.load_judges(), [args.judge], "judge")[0]
    options = {"enforce_eager": True} if args.backend == "vllm" else {}
    runtime = JudgeRuntime(
        store=Store(work / "warmup.sqlite"), backend=args.backend, models={spec.name: args.model}, options=options
    )
    judge = make_judge(spec, variant, runtime)
    backend = judge.backend
    backend.load()
    prompts = [judge.build(s, neutralize(r, judge.special_markers())) for s, r in zip(samples, responses)]
    texts = [backend.render(p) for p in prompts]
    max_new = judge.params.max_new_tokens

    def raw() -> None:
        """The engine given the finished prompt texts: it tokenizes them itself, as engines do."""
        if args.backend == "hf":
            tok, model = backend.tokenizer, backend.model
            ids = [tokenize(tok, p, t) for p, t in zip(prompts, texts)]
            for i in range(0, len(ids), backend.batch_size):
                enc = tok.pad({"input_ids": ids[i : i + backend.batch_size]}, return_tensors="pt")
                with torch.inference_mode():
                    model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
        else:
            from vllm import SamplingParams

            backend.llm.generate(
                texts
                if isinstance(prompts[0], str)
                else [{"prompt_token_ids": tokenize(backend.tokenizer, p, t)} for p, t in zip(prompts, texts)],
                SamplingParams(max_tokens=max_new, temperature=0),
                use_tqdm=False,
            )

    def ours(r: int) -> None:
        judge.runtime.store = Store(work / f"cold{r}.sqlite")
        judge.judge(samples, responses)

    raw(), ours(-1)  # warm-up
    times = {"raw": [], "judge": []}
    for r in range(args.repeats):
        t = time.perf_counter()
        raw()
        times["raw"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ours(r)
        times["judge"].append(time.perf_counter() - t)
    calls = 0
    original = backend.generate

    def counting(*a, **kw):
        nonlocal calls
        calls += 1
        yield from original(*a, **kw)

    backend.generate = counting
    t = time.perf_counter()
    judge.runtime.store = Store(work / "cold0.sqlite")
    judge.judge(samples, responses)
    warm = time.perf_counter() - t
    raw_s, judge_s = statistics.median(times["raw"]), statistics.median(times["judge"])
    print(
        f"{args.judge} on {args.backend} ({args.model}), {len(samples)} responses, {max_new} new tokens, "
        f"median of {args.repeats}"
    )
    print(
        f"  raw engine {len(samples) / raw_s:.1f} responses/s, judge {len(samples) / judge_s:.1f} responses/s, "
        f"ratio {raw_s / judge_s:.3f} (goal >= 0.95)"
    )
    print(f"  warm re-judge: {warm * 1000:.0f} ms, engine calls: {calls} (goal 0)")
    judge.close()


if __name__ == "__main__":
    main()
