"""Where one study cell's wall time goes, phase by phase, against its pure compute measured in the same process.

    .venv/bin/python benchmarks/bench_cell.py --model smollm2 --methods sft,der,linear,ewc --steps 25 --limit 64 \
        --repeats 3 --data-dir ../shared/data

A cell is what a sweep's fine-tuning step does (safeeval/sweep.py): a fresh process that trains (train()) and
then scores the result (score_trained()). Each repeat of each method runs in a fresh process of its own, started
the way the sweep starts a step (a new interpreter), with an empty store, so nothing is served from a cache.

Phases are timed by wrapping the functions that do them; a phase nested in another is counted once, in the
innermost (self time). What no wrapper covers is "other".

Pure compute, measured in the same process right after the cell: the training steps (the sum of the trainer's
own step times) plus generating the very same prompts with the trained weights merged, in batches of the same
size sorted by length, through a bare `model.generate` loop: the engine's raw speed, with no safeeval around it.

A cell of the powered study is larger than an affordable profile (100 steps, ~2,000 prompts). The projection
keeps the one-off phases as measured and scales the per-step phases by steps and the per-prompt phases by prompts;
`--full-steps` and `--full-prompts` set the size projected to. The machine is shared and noisy: every figure is a
median over the repeats, and the goal is a ratio (cell wall time / pure compute), never a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCORED = "advbench,harmbench:test,smoke,benign-selfinstruct"  # + sst2, as the sweep adds a cell's utility
PER_STEP = ("training steps", "training: trainer's own work")
PER_PROMPT = ("scoring: generation", "scoring: judging", "scoring: metrics", "writing results")
ORDER = [
    "process start and imports",
    "model load (training)",
    "data preparation (training)",
    "method: one-off",
    "training steps",
    "training: trainer's own work",
    "saving: checkpoints",
    "method: finish",
    "saving: model",
    "fingerprints",
    "data preparation (scoring)",
    "scoring: contamination check",
    "scoring: engine start",
    "scoring: generation",
    "scoring: judging",
    "scoring: metrics",
    "writing results",
    "other",
]


class Clock:
    """Self time per phase label of wrapped functions, on two clocks: wall and this process's CPU time (all its
    threads). CPU time is what the process computed; other users of a shared machine inflate its wall time far
    more than its CPU time."""

    def __init__(self):
        self.spent: dict[str, dict[str, float]] = {"wall": defaultdict(float), "cpu": defaultdict(float)}
        self.stack: list[list] = []

    def wrap(self, owner, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            self.stack.append([now(), [0.0, 0.0]])
            try:
                return fn(*args, **kwargs)
            finally:
                started, nested = self.stack.pop()
                total = [b - a for a, b in zip(started, now(), strict=True)]
                for i, name in enumerate(("wall", "cpu")):
                    self.spent[name][label] += total[i] - nested[i]
                    if self.stack:
                        self.stack[-1][1][i] += total[i]

        setattr(owner, attr, timed)


def now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def instrument(clock: Clock, captured: dict) -> None:
    """Wrap what each phase calls. Names are looked up in the tree under test and skipped where that tree has no
    such name, so one script profiles the code before issue 14 (commit 2ffda44) and after it alike."""
    import importlib

    import transformers

    from safeeval import generation, run, store
    from safeeval.backends import hf
    from safeeval.backends import vllm as vllm_backend
    from safeeval.train import evaluate, trainer
    from safeeval.train.methods import base as method_base

    steps = importlib.import_module("safeeval.train.steps") if hasattr(trainer, "make_trainer") else trainer
    for owner, attr, label in [
        (trainer, "resolve_model", "model load (training)"),
        (trainer, "load_tokenizer", "model load (training)"),
        (trainer, "_load_model", "model load (training)"),
        (trainer, "load_set", "data preparation (training)"),
        (trainer, "build_mix", "data preparation (training)"),
        (trainer, "encode", "data preparation (training)"),
        (trainer, "_encode", "data preparation (training)"),
        (trainer, "_write_jsonl", "saving: model"),  # mix.jsonl
        (trainer, "write_jsonl", "saving: model"),
        (transformers.Trainer, "train", "training steps"),
        (trainer, "_trainer", "training steps"),  # before: building the Trainer
        (trainer, "make_trainer", "training steps"),  # after
        (transformers.Trainer, "_save_checkpoint", "saving: checkpoints"),
        (trainer, "_save", "saving: model"),
        (trainer, "_write_json", "saving: model"),
        (trainer, "write_json", "saving: model"),
        (trainer, "_post_hoc", "method: one-off"),  # a merge's own loads around its finish (self time)
        (trainer, "folder_fingerprint", "fingerprints"),
        (hf, "folder_fingerprint", "fingerprints"),
        (vllm_backend, "folder_fingerprint", "fingerprints"),
        (evaluate, "contamination", "scoring: contamination check"),
        (run, "prepare", "data preparation (scoring)"),
        (run, "make_backend", "scoring: engine start"),
        (hf.HFBackend, "load", "scoring: engine start"),
        (vllm_backend.VLLMBackend, "load", "scoring: engine start"),
        (run, "generate_cached", "scoring: generation"),
        (generation, "generate_cached", "scoring: generation"),
        (run, "judge_cached", "scoring: judging"),
        (run, "_metrics", "scoring: metrics"),
        (run.degeneration, "signals", "scoring: metrics"),
        (run.degeneration, "summary", "scoring: metrics"),
        (run.results, "write", "writing results"),
        (store.Store, "put_run", "writing results"),
    ]:
        if hasattr(owner, attr):
            clock.wrap(owner, attr, label)
    classes, todo = [], [method_base.Method]
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo += cls.__subclasses__()
    for cls in classes:  # GR-SAP's synthesis is its safety_rows; EWC's Fisher and SafeLoRA's SVD its setup
        for attr, label in (
            ("safety_rows", "method: one-off"),
            ("setup", "method: one-off"),
            ("finish", "method: finish"),
        ):
            if attr in cls.__dict__:
                clock.wrap(cls, attr, label)
    step_timer = steps._step_timer  # the trainer's own step timer (train/steps.py after, train/trainer.py before)

    def timed_steps(ctx):  # and each step's CPU time beside it
        inner = step_timer(ctx)

        class Both(type(inner)):
            def on_step_begin(self, *args, **kwargs):
                self.cpu = time.process_time()
                super().on_step_begin(*args, **kwargs)

            def on_step_end(self, *args, **kwargs):
                super().on_step_end(*args, **kwargs)
                captured.setdefault("steps", []).append((ctx.step_times[-1], time.process_time() - self.cpu))

        return Both()

    steps._step_timer = timed_steps


def raw_generation(record: dict, rows: list[dict], batch_size: int) -> dict:
    """The same prompts through a bare generate loop on the trained weights (an adapter merged): seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = record["output"]
    path = output["model"] or record["base_model"]["path"]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    if not output["model"]:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, output["adapter"]).merge_and_unload()
    model.eval()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    # as the hf backend tokenizes a chat: rendered by the template, which writes its own special tokens
    ids = [
        tok(
            tok.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True), add_special_tokens=False
        )["input_ids"]
        for r in rows
    ]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    started, new_tokens = now(), 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        enc = tok.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=32, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id
            )
        new_tokens += out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1])
    return {"wall": now()[0] - started[0], "cpu": now()[1] - started[1], "batch_tokens": new_tokens}


def child(given: dict) -> None:
    """One cell in this fresh process; prints one JSON line of phases."""
    entered = time.time()
    sys.path.insert(0, given["tree"])  # the safeeval under test
    import peft  # noqa: F401  (what a sweep step imports anyway, timed as process start)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from safeeval.train import load_config, train
    from safeeval.train.evaluate import score_trained

    clock, captured = Clock(), {}
    instrument(clock, captured)
    clock.spent["wall"]["process start and imports"] = time.time() - given["launched"]
    clock.spent["cpu"]["process start and imports"] = time.process_time()  # since this process began
    folder = Path(given["folder"])
    cfg = load_config(
        None,
        {
            "base": given["model"],
            "task": "sst2",
            "method": given["method"],
            "method_options": given["options"],
            "steps": given["steps"],
            "batch_size": 8,
            "max_length": 256,
            "lr": 2e-4,
            "seed": 0,
            "save_steps": given["save_steps"],
            "data_dir": given["data_dir"],
            "out": str(folder / given["method"]),
        },
    )
    started = now()
    record = train(cfg, notify=lambda text: None)
    settings = {
        "tasks": given["tasks"].split(","),
        "judges": ["keyword"],
        "limit": given["limit"],
        "max_new_tokens": 32,
        "batch_size": given["score_batch"],
        "backend": given["backend"],
        "store": str(folder / "store.sqlite"),
        "out": str(folder / given["method"] / "score"),
    }
    summary = score_trained(record, cfg, settings)
    ended = now()
    # a typed RunResult on main, a plain dict before issue 17's refactor (commit 2ffda44)
    out_dir, model_info = (
        (summary["out"], summary["model"]) if isinstance(summary, dict) else (summary.out, vars(summary.model))
    )
    rows = [json.loads(line) for line in (Path(out_dir) / "samples.jsonl").read_text().splitlines()]
    raw = raw_generation(record, rows, given["score_batch"])
    steps = captured.get("steps", [])
    cell = {
        "method": given["method"],
        "steps": len(steps),
        "checkpoints": len(steps) // given["save_steps"],
        "prompts": len(rows),
        "generated_tokens": sum(r["n_tokens"] or 0 for r in rows),
        "merged": model_info.get("merged"),
        "peak_rss_mib": record["trainer"]["peak_rss_mib"],
        "entered_after_s": entered - given["launched"],
    }
    for i, name in enumerate(("wall", "cpu")):
        phases = dict(clock.spent[name])
        total = ended[i] - started[i] + phases["process start and imports"]
        step_times = [step[i] for step in steps]
        phases["training: trainer's own work"] = phases.pop("training steps") - sum(step_times)
        phases["training steps"] = sum(step_times)
        phases["other"] = total - sum(phases.values())
        cell[name] = {"total_s": total, "phases": phases, "step_times": step_times, "raw_generation_s": raw[name]}
    print("CELL " + json.dumps(cell))


def run_cell(method: str, options: dict, args, tree: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        given = {
            "tree": tree,
            "model": args.model,
            "method": method,
            "options": options,
            "steps": args.steps,
            "save_steps": args.save_steps,
            "data_dir": args.data_dir,
            "tasks": args.tasks + ",sst2",
            "limit": args.limit,
            "score_batch": args.score_batch,
            "backend": args.backend,
            "folder": tmp,
            "launched": time.time(),
        }
        # Passive OpenMP waits: a thread waiting at a barrier sleeps instead of spinning, so CPU time counts work,
        # not the spinning that a busy machine's descheduled sibling thread causes.
        env = {**os.environ, "PYTHONPATH": tree, "OMP_WAIT_POLICY": "PASSIVE"}
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(given)], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            sys.exit(f"{method} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.split("CELL ", 1)[1].splitlines()[0])


def project(cell: dict, clock: str, steps: int, prompts: int, save_steps: int) -> dict:
    """Total time and pure compute of a cell of `steps` steps and `prompts` prompts, from a smaller one: one-off
    phases as measured, per-step phases scaled by steps, per-prompt phases by prompts, checkpoints by their number
    (one every `save_steps` steps)."""
    got = cell[clock]
    times = got["step_times"]
    median = statistics.median(times[1:] or times)
    per_step, per_prompt = steps / max(1, cell["steps"]), prompts / max(1, cell["prompts"])
    total = 0.0
    for name, seconds in got["phases"].items():
        if name == "training steps":  # the first step's warm-up stays a one-off
            seconds = times[0] + median * (steps - 1)
        elif name == "saving: checkpoints":
            seconds = seconds / max(1, cell["checkpoints"]) * (steps // save_steps)
        elif name in PER_STEP:
            seconds *= per_step
        elif name in PER_PROMPT:
            seconds *= per_prompt
        total += seconds
    pure = times[0] + median * (steps - 1) + got["raw_generation_s"] * per_prompt
    return {"total_s": total, "pure_s": pure, "ratio": total / pure}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument(
        "--pre-alignment", default="smollm2", help="For safelora and magmax: the model --model was aligned from."
    )
    parser.add_argument("--methods", default="sft,der,linear,ewc")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--save-steps", type=int, default=20, help="As configs/mini-repro.yaml.")
    parser.add_argument("--tasks", default=SCORED)
    parser.add_argument("--limit", type=int, default=64, help="Prompts per scored task.")
    parser.add_argument("--score-batch", type=int, default=16)
    parser.add_argument("--backend", default="hf")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-steps", type=int, default=100)
    parser.add_argument("--full-prompts", type=int, default=2000)
    parser.add_argument("--full-save-steps", type=int, default=20, help="Checkpoint interval of the projected cell.")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", help="Also write every cell's figures as JSON here.")
    parser.add_argument(
        "--tree",
        action="append",
        help="NAME=PATH of a safeeval checkout to run the cells with "
        "(repeatable: trees alternate within each repeat, e.g. before=/tmp/old after=.); "
        "default: this one.",
    )
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    special = {
        "safelora": {"base": args.pre_alignment},
        "magmax": {"base": args.pre_alignment},
        "grsap": {"per_domain": 4, "domains": "violence,cybercrime", "max_response_tokens": 64},
    }
    trees = dict(t.split("=", 1) for t in args.tree or [f"this={ROOT}"])
    cells: dict[str, list[dict]] = defaultdict(list)
    for _ in range(args.repeats):  # methods and trees interleaved: a busy spell of the machine hits all of them
        for method in args.methods.split(","):
            for name, tree in trees.items():
                cell = run_cell(method, special.get(method, {}), args, str(Path(tree).resolve()))
                for clock in ("cpu", "wall"):
                    cell[clock]["projected"] = project(
                        cell, clock, args.full_steps, args.full_prompts, args.full_save_steps
                    )
                label = method if len(trees) == 1 else f"{method} ({name})"
                cells[label].append(cell)
                if args.out:  # as it goes: a long run cut short keeps its cells
                    Path(args.out).write_text(json.dumps(cells, indent=2))
                print(
                    f"{label}: "
                    + ", ".join(
                        f"{clock} {cell[clock]['total_s']:.1f} s, projected ratio "
                        f"{cell[clock]['projected']['ratio']:.2f}"
                        for clock in ("cpu", "wall")
                    ),
                    flush=True,
                )
    for clock in ("cpu", "wall"):
        print(render(cells, args, clock) + "\n")
    if args.out:
        Path(args.out).write_text(json.dumps(cells, indent=2))


def render(cells: dict[str, list[dict]], args, clock: str) -> str:
    med = statistics.median
    first = next(iter(cells.values()))[0]
    lines = [
        f"{clock} time: {args.steps} steps, {first['prompts']} prompts (<= 32 new tokens), backend {args.backend}, "
        f"median of {args.repeats} fresh processes; seconds, and share of the cell's total",
        "",
        "| phase | " + " | ".join(cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    for phase in ORDER:
        row = []
        for runs in cells.values():
            s = med([c[clock]["phases"].get(phase, 0.0) for c in runs])
            row.append(f"{s:.1f} ({100 * s / med([c[clock]['total_s'] for c in runs]):.0f}%)")
        lines.append(f"| {phase} | " + " | ".join(row) + " |")
    pure = lambda c: sum(c[clock]["step_times"]) + c[clock]["raw_generation_s"]  # noqa: E731
    for label, get in [
        ("total", lambda c: c[clock]["total_s"]),
        ("pure compute (steps + raw generation)", pure),
        ("total / pure compute", lambda c: c[clock]["total_s"] / pure(c)),
        ("median step s", lambda c: med(c[clock]["step_times"][1:] or c[clock]["step_times"])),
        (
            "scored generation / raw generation",
            lambda c: c[clock]["phases"]["scoring: generation"] / c[clock]["raw_generation_s"],
        ),
        (
            f"projected {args.full_steps} steps + {args.full_prompts} prompts: total / pure",
            lambda c: c[clock]["projected"]["ratio"],
        ),
        ("projected total s", lambda c: c[clock]["projected"]["total_s"]),
    ]:
        lines.append(
            f"| **{label}** | " + " | ".join(f"{med(get(c) for c in runs):.2f}" for runs in cells.values()) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
