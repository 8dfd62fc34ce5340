"""Time per step and peak memory of every training method, as ratios to `sft` measured in the same process.

    .venv/bin/python benchmarks/bench_train.py --model ALIGNED --pre-alignment smollm2 --steps 6 \
        --data-dir ../shared/data

Each method trains `--steps` LoRA steps on SST-2 (batch 8); `sft` runs before every method and the ratio
uses the median of its runs, so a noisy machine moves both sides. The first step (warm-up, lazy init) is
left out: the per-step time is the median of the others. Peak memory is each method's peak RSS in a fresh
process of its own (3 steps), beside sft's, since an allocator that already grew for an earlier run hides
a later run's needs. One-off costs: EWC's Fisher estimate and GR-SAP's synthesis (small settings, scaled per sample).
Post-hoc merges train nothing: their cost is the merge itself, reported in seconds.

Memory (issue 14), e.g. the GSM8K cells' settings:

    .venv/bin/python benchmarks/bench_train.py --task gsm8k --max-length 384 --no-timing --breakdown --compare-plain \
        --methods der,er,ewc,lwf,lisa,grsap --data-dir ../shared/data

--breakdown: what the forward pass keeps for the backward pass, by the innermost module that saved it and its
dtype, on the batch of the longest rows (autograd's saved-tensor hooks; each storage counted once). Peak RSS is
what the operating system sees; the breakdown says which tensors make it. --compare-plain: each method's peak
also without the training step's memory cuts (safeeval/train/lean.py), in a fresh process too: the ratio is the
cut's effect.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from safeeval.train import load_config, train  # noqa: E402  (the checkout's safeeval, after sys.path)

TRAINED = ["sft", "er", "der", "derpp", "agem", "l2", "ewc", "lwf", "lisa", "safelora", "grsap"]
POST_HOC = ["linear", "task-arithmetic", "ties", "dare", "magmax"]


def peak_rss_mib(method: str, args, options: dict | None, plain: bool = False) -> float:
    """Peak RSS of a fresh process that loads the model and trains 3 steps of `method`; plain: without lean.py's
    cuts (peft's float32 dropout noise, logits at every position), as the trainer ran before them."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.bench_train import run, plain_step; "
        "import argparse, tempfile, pathlib;"
        "a = argparse.Namespace(**json.loads(sys.argv[1]));"
        "sys.argv[4] == '1' and plain_step();"
        "r, _ = run(sys.argv[2], a, pathlib.Path(tempfile.mkdtemp()), json.loads(sys.argv[3]));"
        "print('PEAK', r['trainer']['peak_rss_mib'])"
    )
    given = json.dumps({**vars(args), "steps": 3})
    done = subprocess.run(
        [sys.executable, "-c", code, given, method, json.dumps(options or {}), str(int(plain))],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{method} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.split("PEAK")[-1])


def plain_step() -> None:
    """The training step as it was before lean.py: peft's own dropout, the model's loss over all logits."""
    from safeeval.train import lean
    from safeeval.train.methods.base import Method

    lean.lean_lora_dropout = lambda model: 0
    Method.full_logits = True


def breakdown(args, plain: bool = False) -> dict:
    """MiB saved for the backward pass by one forward of the longest rows, per (module kind, dtype); a fresh process."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.bench_train import saved_for_backward, "
        "plain_step; import argparse; a = argparse.Namespace(**json.loads(sys.argv[1]));"
        "sys.argv[2] == '1' and plain_step();"
        "print('SAVED', json.dumps(saved_for_backward(a)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(vars(args)), str(int(plain))], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"breakdown failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("SAVED")[-1])


def saved_for_backward(args) -> dict:
    import collections

    import torch

    from safeeval.models import load_tokenizer, resolve_model
    from safeeval.train import trainer
    from safeeval.train.data import build_mix, encode
    from safeeval.train.methods.base import Method
    from safeeval.train.sets import load_set

    cfg = load_config(
        None,
        dict(
            base=args.model,
            task=args.task,
            steps=1,
            batch_size=args.batch_size,
            max_length=args.max_length,
            data_dir=args.data_dir,
            out=tempfile.mkdtemp(),
        ),
    )
    base = resolve_model(cfg.base)
    tokenizer = load_tokenizer(base.path)
    tokenizer.padding_side = "right"
    task = load_set(cfg.task, "task", Path(args.data_dir))
    rows = [
        r for r in (encode(tokenizer, ex.messages, cfg.max_length) for ex in build_mix(task, 256, seed=0).examples) if r
    ]
    batch = trainer.collate(tokenizer, sorted(rows, key=lambda r: -len(r["input_ids"]))[: cfg.batch_size])
    model = trainer._load_model(cfg, base).train()
    where = ["(loss, outside every module)"]
    for name, module in model.named_modules():
        label = f"{type(module).__name__} {name.split('.')[-1] if not name.split('.')[-1].isdigit() else ''}".strip()
        module.register_forward_pre_hook(lambda m, a, label=label: where.append(label))
        module.register_forward_hook(lambda m, a, o: where.pop() and None)  # a hook returning a value replaces o
    seen, tally = set(), collections.Counter()

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            tally[f"{where[-1]} ({str(t.dtype).removeprefix('torch.')})"] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        from safeeval.train.steps import completion_ce

        completion_ce(model, batch, full_logits=Method.full_logits)
    total = sum(tally.values())
    return {
        "batch": list(batch["input_ids"].shape),
        "learned_tokens": int((batch["labels"] != -100).sum()),
        "total_mib": round(total / 2**20),
        "by": {k: round(v / 2**20) for k, v in tally.most_common()},
    }


def step_seconds(record: dict) -> float:
    return record["trainer"]["seconds_per_step"]  # the median step after the first


def run(method: str, args, folder: Path, options: dict | None = None) -> tuple[dict, float]:
    """Train one method; returns its training record and wall seconds."""
    cfg = load_config(
        None,
        dict(
            base=args.model,
            task=args.task,
            method=method,
            method_options=options or {},
            steps=args.steps,
            batch_size=args.batch_size,
            max_length=args.max_length,
            lr=2e-4,
            seed=0,
            save_steps=10_000,
            data_dir=args.data_dir,
            out=str(folder / f"{method}-{time.time_ns()}"),
        ),
    )
    started = time.perf_counter()
    record = train(cfg, notify=lambda text: None)
    return record, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2", help="The aligned model (GR-SAP needs one that refuses).")
    parser.add_argument(
        "--pre-alignment", default="smollm2", help="The model --model was aligned from (safelora, magmax)."
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--methods", default=",".join(TRAINED + POST_HOC))
    parser.add_argument("--out", default=None, help="Also write the figures as JSON here.")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="Skip the peak-memory processes.")
    parser.add_argument("--no-timing", dest="timing", action="store_false", help="Skip the step-time runs.")
    parser.add_argument("--breakdown", action="store_true", help="What the forward keeps for the backward pass.")
    parser.add_argument("--compare-plain", action="store_true", help="Peaks also without lean.py's cuts.")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m != "sft"]
    special = {
        "safelora": {"base": args.pre_alignment},
        "magmax": {"base": args.pre_alignment},
        "grsap": {"per_domain": 4, "domains": "violence,cybercrime", "max_response_tokens": 64},
    }
    report = {
        "model": args.model,
        "task": args.task,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "methods": {m: {} for m in methods},
    }
    if args.breakdown:
        report["saved_for_backward"] = breakdown(args)
        if args.compare_plain:
            report["saved_for_backward_plain"] = breakdown(args, plain=True)
    if args.timing:
        timing(args, methods, special, report)
    if args.memory:
        memory(args, methods, special, report)
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


def timing(args, methods: list[str], special: dict, report: dict) -> None:
    sft_steps = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for method in methods:
            ref, _ = run("sft", args, folder)
            sft_steps.append(step_seconds(ref))
            record, wall = run(method, args, folder, special.get(method))
            row = {
                "step_s": round(step_seconds(record), 3),
                "setup_s": record["trainer"]["setup_seconds"],
                "finish_s": record["trainer"]["finish_seconds"],
                "wall_s": round(wall, 1),
            }
            if method in POST_HOC:
                row = {"merge_s": record["trainer"]["finish_seconds"]}
            if method == "ewc":
                row["fisher_s"] = record["method"].get("fisher_seconds")
            report["methods"][method].update(row)
            print(method, row, flush=True)
    sft = statistics.median(sft_steps)
    for row in report["methods"].values():
        if "step_s" in row:
            row["step_vs_sft"] = round(row["step_s"] / sft, 2)
    report.update(sft_step_s_median=round(sft, 3), sft_step_s_all=[round(s, 3) for s in sft_steps])


def memory(args, methods: list[str], special: dict, report: dict) -> None:
    variants = [False, True] if args.compare_plain else [False]
    sft_peak = {plain: peak_rss_mib("sft", args, None, plain) for plain in variants}
    report["sft_peak_rss_mib"] = round(sft_peak[False], 1)
    if args.compare_plain:
        report["sft_peak_rss_mib_plain"] = round(sft_peak[True], 1)
        report["sft_peak_vs_plain"] = round(sft_peak[False] / sft_peak[True], 2)
    for method in methods:
        if method in POST_HOC:
            continue
        row = report["methods"][method]
        row["peak_rss_mib"] = round(peak_rss_mib(method, args, special.get(method)), 1)
        row["peak_vs_sft"] = round(row["peak_rss_mib"] / sft_peak[False], 2)
        if args.compare_plain:
            row["peak_rss_mib_plain"] = round(peak_rss_mib(method, args, special.get(method), plain=True), 1)
            row["peak_vs_plain"] = round(row["peak_rss_mib"] / row["peak_rss_mib_plain"], 2)
        print(method, row, flush=True)


if __name__ == "__main__":
    main()
