"""The `safeeval` command: thin typer commands that wire the parts together."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .errors import SafeevalError

app = typer.Typer(
    name="safeeval",
    help="Did fine-tuning make this model less safe? Score safety benchmarks with judged, reproducible results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True)
out_console = Console()

SCORE_HELP = """Generate answers to benchmark prompts, judge them, and write results.json + samples.jsonl.

Every generation and verdict is kept in a SQLite store keyed by model, prompt and settings: re-running
a command generates nothing new, adding a judge only judges, and an interrupted run (Ctrl-C, kill -9)
resumes where it stopped.

[bold]Examples[/bold]

  [dim]# the packaged SmolLM2 on the offline smoke set[/dim]
  safeeval score --model smollm2 --tasks smoke

  [dim]# HarmBench's validation split and AdvBench from local copies, 50 prompts each[/dim]
  safeeval score --model ./my-finetune --tasks harmbench:val,advbench --limit 50 --data-dir ~/data

  [dim]# a LoRA adapter on vLLM, or any OpenAI-compatible endpoint[/dim]
  safeeval score --model meta-llama/Llama-3.1-8B-Instruct --adapter ./lora --backend vllm --tasks advbench
  OPENAI_API_KEY=... safeeval score --backend openai --model gpt-4o-mini --tasks smoke
"""


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@contextlib.contextmanager
def _errors():
    """User mistakes end in one red sentence and exit code 2; Ctrl-C keeps what was saved."""
    try:
        yield
    except SafeevalError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/yellow] Everything generated so far is saved in the store; "
                      "run the same command again to resume.", soft_wrap=True)
        raise typer.Exit(130)


@contextlib.contextmanager
def _rich_stage(description: str, total: int):
    if total == 0:
        yield lambda n: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@app.command(help=SCORE_HELP)
def score(
    model: str = typer.Option(..., "--model", "-m", help="Model folder, .gguf file, Hub id, alias ('smollm2'), or endpoint model name."),
    tasks: str = typer.Option("smoke", "--tasks", "-t", help="Comma-separated tasks; 'name:split' picks a split, e.g. harmbench:val. See `safeeval tasks`."),
    judges: str = typer.Option("keyword", "--judges", "-j", help="Comma-separated judges; 'keyword:LIST' picks a marker list. See `safeeval judges`."),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf (transformers), vllm, or openai (any OpenAI-compatible endpoint)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Score a seeded random subset of N prompts per task (file order kept)."),
    seed: int = typer.Option(0, "--seed", help="Seeds sampling, subsets and bootstrap intervals."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for results.json and samples.jsonl [default: safeeval-runs/MODEL-TIME]."),
    store: Optional[Path] = typer.Option(None, "--store", envvar="SAFEEVAL_STORE", help="SQLite run store [default: ~/.cache/safeeval/store.sqlite]."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of local benchmark copies (advbench/, harmbench/, hex_phi/...); else the Hub."),
    tasks_dir: list[Path] = typer.Option([], "--tasks-dir", help="Extra folder of task YAML specs (repeatable)."),
    judges_dir: list[Path] = typer.Option([], "--judges-dir", help="Extra folder of judge YAML specs (repeatable)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt", help="A system message put before every prompt."),
    chat_template: Optional[str] = typer.Option(None, "--chat-template", help="Jinja chat template (file or text) for models without one."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="LoRA adapter folder (hf, vllm)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bfloat16, float16 or float32 (hf, vllm). auto runs float32 checkpoints in bfloat16."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Prompts per batch (hf, default 16) or per saved chunk (vllm, default 256)."),
    tensor_parallel: int = typer.Option(1, "--tensor-parallel", min=1, help="vLLM tensor parallel size."),
    data_parallel: int = typer.Option(1, "--data-parallel", min=1, help="vLLM data parallel size."),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vLLM: skip graph compilation (starts ~4x faster on CPU, runs ~25% slower)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Name of the environment variable holding the endpoint's key (the key itself is never written anywhere)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Parallel requests (openai)."),
):
    from .run import ScoreConfig, score as run_score

    _quiet_libraries()

    options = {"adapter": adapter, "dtype": dtype, "chat_template": chat_template,
               "tensor_parallel_size": tensor_parallel, "data_parallel_size": data_parallel,
               "enforce_eager": enforce_eager}
    if batch_size:
        options["batch_size"] = batch_size
    if backend == "openai":
        options = {"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency}
    cfg = ScoreConfig(model=model, tasks=_split(tasks), judges=_split(judges), backend=backend, limit=limit,
                      seed=seed, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                      system_prompt=system_prompt, out=out, store=store, data_dir=data_dir,
                      tasks_dirs=list(tasks_dir), judges_dirs=list(judges_dir), backend_options=options,
                      command=["safeeval", *sys.argv[1:]])
    with _errors():
        summary = run_score(cfg, reporter=_rich_stage)
    _print_summary(summary)


def _quiet_libraries() -> None:
    """Our progress bars are the ones to read; the libraries' own bars and notices are noise here."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def _pct(block: dict | None) -> str:
    if not block or block.get("value") is None:
        return "-"
    return f"{100 * block['value']:.1f} [{100 * block['ci_low']:.0f}, {100 * block['ci_high']:.0f}]"


def _print_summary(summary: dict) -> None:
    model = summary["model"]
    rows = [[task, judge, _pct(m["asr"]), f"{m['n_judged']}/{m['n_harmful']}", str(m["not_judged"]),
             str(m["unparsed"]), _pct(m.get("benign_refusal_rate"))]
            for task, by_judge in summary["metrics"].items() for judge, m in by_judge.items()]
    table = Table(title=f"{model['name']} ({model['backend']}, fingerprint {model['fingerprint']})",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # Numbers are never cut: their columns are as wide as their widest cell. Names fold instead.
    table.add_column("task", overflow="fold", min_width=min(16, max(len(r[0]) for r in rows)))
    table.add_column("judge", overflow="fold", min_width=7)
    headers = ("ASR %\n[95% CI]", "judged", "not\njudged", "un-\nparsed", "benign\nrefusal %")
    for k, header in enumerate(headers, start=2):
        width = max(max(len(r[k]) for r in rows), *(len(h) for h in header.split("\n")))
        table.add_column(header, justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    out_console.print(table)
    c = summary["counts"]
    out_console.print(f"{c['samples']} samples, {c['generated_now']} generated now, {c['judged_now']} verdicts now, "
                      f"{c['truncated']} cut at --max-new-tokens. Results: {summary['out']}/results.json",
                      highlight=False, soft_wrap=True)


@app.command("tasks", help="List the benchmarks: name, splits, rows, source and licence, and whether a local copy is found.")
def list_tasks(
    tasks_dir: list[Path] = typer.Option([], "--tasks-dir", help="Extra folder of task YAML specs (repeatable)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of local benchmark copies to look in."),
):
    from .registry import load_tasks

    with _errors():
        specs = load_tasks(tasks_dir)
    table = Table(title="safeeval tasks")
    for col in ("name", "splits", "rows", "source", "licence", "local copy"):
        table.add_column(col, overflow="fold")
    for name, spec in sorted(specs.items()):
        rows = spec.rows if not isinstance(spec.rows, dict) else ", ".join(f"{k} {v}" for k, v in spec.rows.items())
        source = spec.hub["dataset"] if spec.hub and spec.hub.get("dataset") != "csv" else (spec.url or "inline")
        splits = ", ".join(spec.splits or []) + (f" (default {spec.default_split})" if spec.default_split else "")
        table.add_row(name, splits or "-", str(rows or "?"), source, spec.license or "?", _local_copy(spec, data_dir))
    out_console.print(table)


def _local_copy(spec, data_dir: Optional[Path]) -> str:
    if spec.inline:
        return "built in"
    if not spec.local or data_dir is None:
        return "-"
    pattern = spec.local["path"].format(split=spec.default_split or "")
    return "found" if any(data_dir.glob(pattern)) else f"missing ({pattern})"


@app.command("judges", help="List the judges and the refusal-marker lists the keyword judge can use.")
def list_judges(
    judges_dir: list[Path] = typer.Option([], "--judges-dir", help="Extra folder of judge YAML specs (repeatable)."),
):
    from .registry import load_judges, marker_lists

    with _errors():
        specs, lists = load_judges(judges_dir), marker_lists(judges_dir)
    table = Table(title="safeeval judges")
    for col in ("name", "kind", "description"):
        table.add_column(col, overflow="fold")
    for name, spec in sorted(specs.items()):
        table.add_row(name, spec.data["kind"], " ".join(str(spec.data.get("description", "")).split()))
    out_console.print(table)
    markers = Table(title="refusal-marker lists (keyword:NAME)")
    for col in ("name", "markers", "source", "licence"):
        markers.add_column(col, overflow="fold")
    for name, spec in lists.items():
        markers.add_row(name, str(len(spec["markers"])), spec.get("source", ""), spec.get("license", ""))
    out_console.print(markers)


@app.callback(invoke_without_command=True)
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        out_console.print(f"safeeval {__version__}")
        raise typer.Exit()


def main() -> None:  # pragma: no cover - for `python -m safeeval`
    app()
