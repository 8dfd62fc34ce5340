"""Which scoring engine a study cell should use: hf (merged adapter) or vllm (adapter as a LoRARequest).

    .venv/bin/python benchmarks/bench_engine.py --model smollm2 --limit 24 --repeats 2 --data-dir ../shared/data

A cell starts its engine once, in a fresh process, and generates a cell's prompts (advbench, harmbench:test, smoke,
benign-selfinstruct and sst2, <= 32 new tokens). So each engine's cost is start + prompts x seconds per prompt, and
vLLM pays off only past the break-even number of prompts: (vLLM's start - hf's start) / (hf's - vLLM's seconds per
prompt). Both engines run in one fresh process per repeat, each through safeeval's own backend (no store), with
generation rounds alternating between them, so the noisy shared machine moves both sides alike. hf's start counts
torch's and transformers' imports, load and merge; vLLM's its own import (seconds) and the engine's start.

The adapter is a real LoRA adapter (r=16, all linear layers) from a short sft run on SST-2, trained once at the
beginning; `--adapter` takes one instead. `--base-vllm` adds a process that runs vLLM on the base weights (the
compute of merged weights) beside hf, to show what vLLM's own LoRA path costs it.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TASKS = ["advbench", "harmbench:test", "smoke", "benign-selfinstruct", "sst2"]


def chats(args) -> list:
    from safeeval.config import ScoreConfig
    from safeeval.run import _chat, prepare

    settings = {"model": args.model, "tasks": TASKS, "limit": args.limit, "data_dir": Path(args.data_dir)}
    prep = prepare(ScoreConfig.from_settings(settings))
    return [_chat(s, None) for _, got, _ in prep.tasks for s in got.samples]


def child(given: dict) -> None:
    from safeeval.backends import GenParams, make_backend

    prompts = chats(argparse.Namespace(**given))
    params = GenParams(max_new_tokens=32)
    adapter = given["adapter"] if not given["vllm_base"] else None
    started = time.perf_counter()
    hf = make_backend("hf", given["model"], adapter=given["adapter"], batch_size=16)
    hf.load()
    hf_start = time.perf_counter() - started  # with torch's and transformers' imports: a cell pays them once
    started = time.perf_counter()
    vllm = make_backend("vllm", given["model"], adapter=adapter, batch_size=256, enforce_eager=given["eager"])
    vllm.load()
    vllm_start = time.perf_counter() - started
    rounds = {"hf": [], "vllm": []}
    tokens = {}
    for _ in range(given["rounds"]):
        for name, backend in (("hf", hf), ("vllm", vllm)):
            t0 = time.perf_counter()
            done = [c for group in backend.generate(prompts, params) for c in group]
            rounds[name].append(time.perf_counter() - t0)
            tokens[name] = sum(c.n_tokens or 0 for c in done)
    vllm.close()
    print(
        "ENGINE "
        + json.dumps(
            {
                "prompts": len(prompts),
                "hf_start_s": hf_start,
                "vllm_start_s": vllm_start,
                "hf_gen_s": statistics.median(rounds["hf"]),
                "vllm_gen_s": statistics.median(rounds["vllm"]),
                "tokens": tokens,
                "hf_merged": hf.merged,
                "vllm_lora": adapter is not None,
            }
        )
    )


def make_adapter(args, folder: Path) -> str:
    from safeeval.train import load_config, train

    cfg = load_config(
        None,
        {
            "base": args.model,
            "task": "sst2",
            "steps": 2,
            "batch_size": 8,
            "max_length": 256,
            "data_dir": args.data_dir,
            "out": str(folder / "sft"),
            "save_steps": 100,
        },
    )
    return train(cfg, notify=lambda text: None)["output"]["adapter"]


def run_child(args, adapter: str, vllm_base: bool) -> dict:
    given = {
        "model": args.model,
        "adapter": adapter,
        "limit": args.limit,
        "data_dir": args.data_dir,
        "rounds": args.rounds,
        "eager": args.enforce_eager,
        "vllm_base": vllm_base,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(given)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        sys.exit(f"engine run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("ENGINE ", 1)[1].splitlines()[0])


def summarize(runs: list[dict], cell_prompts: int) -> dict:
    med = statistics.median
    n = runs[0]["prompts"]
    hf_per, vllm_per = med(r["hf_gen_s"] for r in runs) / n, med(r["vllm_gen_s"] for r in runs) / n
    hf_start, vllm_start = med(r["hf_start_s"] for r in runs), med(r["vllm_start_s"] for r in runs)
    gain = hf_per - vllm_per
    return {
        "prompts": n,
        "hf_start_s": round(hf_start, 1),
        "vllm_start_s": round(vllm_start, 1),
        "hf_s_per_prompt": round(hf_per, 3),
        "vllm_s_per_prompt": round(vllm_per, 3),
        "vllm_gen_vs_hf": round(vllm_per / hf_per, 2),
        "break_even_prompts": round((vllm_start - hf_start) / gain) if gain > 0 else None,
        f"cell_{cell_prompts}_vllm_vs_hf": round(
            (vllm_start + cell_prompts * vllm_per) / (hf_start + cell_prompts * hf_per), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--adapter", help="A LoRA adapter of --model; default: a 2-step sft run made here.")
    parser.add_argument("--limit", type=int, default=24, help="Prompts per task (5 tasks; smoke has 40).")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating generation rounds per process.")
    parser.add_argument("--repeats", type=int, default=2, help="Fresh processes.")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without graph compilation.")
    parser.add_argument("--base-vllm", action="store_true", help="Also vLLM on the base weights beside hf.")
    parser.add_argument("--cell-prompts", type=int, default=2000)
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    with tempfile.TemporaryDirectory() as tmp:
        adapter = args.adapter or make_adapter(args, Path(tmp))
        report = {}
        for variant in [False, True] if args.base_vllm else [False]:
            runs = [run_child(args, adapter, variant) for _ in range(args.repeats)]
            report["vllm base weights" if variant else "vllm with LoRARequest"] = {
                **summarize(runs, args.cell_prompts),
                "runs": runs,
            }
            print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
