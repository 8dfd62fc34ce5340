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

  [dim]# safety and utility in one run; a suite; XSTest with the three-way refusal judge[/dim]
  safeeval score --model ./my-finetune --tasks advbench,gsm8k,humaneval --data-dir ~/data
  safeeval score --model ./my-finetune --tasks suite:unforgotten-safety,xstest --judges keyword,refusal

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
    except OSError as exc:  # an output file or folder we cannot write or read: say which, not a traceback
        where = f" {exc.filename}" if exc.filename else ""
        console.print(f"[red]error:[/red] cannot use{where}: {exc.strerror or exc}.", highlight=False, soft_wrap=True)
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
    judge_backend: Optional[str] = typer.Option(None, "--judge-backend", help="Backend for model judges (hf, vllm, openai) [default: each judge spec's own]."),
    judge_model: list[str] = typer.Option([], "--judge-model", help="JUDGE=MODEL: the model a model judge runs on, e.g. llama-guard=./LlamaGuard3 (repeatable)."),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="OpenAI-compatible endpoint for model judges."),
    judge_api_key_env: str = typer.Option("OPENAI_API_KEY", "--judge-api-key-env", help="Name of the environment variable holding the judge endpoint's key."),
    perplexity_model: Optional[str] = typer.Option(None, "--perplexity-model", help="A reference model for the optional perplexity degeneration signal (a missing one is skipped, and the skip recorded)."),
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
                      command=["safeeval", *sys.argv[1:]], judge_backend=judge_backend,
                      judge_models=_judge_models(judge_model),
                      judge_options=_judge_options(judge_backend, judge_base_url, judge_api_key_env, dtype),
                      perplexity_model=perplexity_model)
    with _errors():
        summary = run_score(cfg, reporter=_rich_stage)
    _print_summary(summary)


def _judge_models(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, model = pair.partition("=")
        if not sep or not name or not model:
            raise typer.BadParameter(f"'{pair}' is not JUDGE=MODEL, e.g. llama-guard=./LlamaGuard3", param_hint="--judge-model")
        out[name.strip()] = model.strip()
    return out


def _judge_options(backend: str | None, base_url: str | None, api_key_env: str, dtype: str) -> dict:
    if backend == "openai" or base_url:
        return {"base_url": base_url, "api_key_env": api_key_env}
    return {"dtype": dtype}


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


def _print_rows(title: str, names: list[str], numeric: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # Numbers are never cut: their columns are as wide as their widest cell. Names fold instead.
    table.add_column(names[0], overflow="fold", min_width=min(16, max(len(r[0]) for r in rows)))
    table.add_column(names[1], overflow="fold", min_width=7)
    for k, header in enumerate(numeric, start=2):
        width = max(max(len(r[k]) for r in rows), *(len(h) for h in header.split("\n")))
        table.add_column(header, justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    out_console.print(table)


def _print_summary(summary: dict) -> None:
    model = summary["model"]
    out_console.print(f"[bold]{model['name']}[/bold] ({model['backend']}, fingerprint {model['fingerprint']})",
                      highlight=False)
    utility = [[task, scorer, _pct(m["accuracy"]), str(m["n"]), str(m["no_answer"])]
               for task, by in summary["metrics"].items() for scorer, m in by.items() if "accuracy" in m]
    if utility:
        _print_rows("utility", ["task", "scorer"], ["accuracy %\n[95% CI]", "n", "no\nanswer"], utility)
    rows = [[task, judge, _pct(m["asr"]), f"{m['n_judged']}/{m['n_harmful']}", str(m["not_judged"]),
             str(m["unparsed"]), _pct(m.get("benign_refusal_rate"))]
            for task, by_judge in summary["metrics"].items() for judge, m in by_judge.items() if "asr" in m]
    if rows:
        _print_rows("safety", ["task", "judge"], ["ASR %\n[95% CI]", "judged", "not\njudged", "un-\nparsed",
                                                  "benign\nrefusal %"], rows)
    for task, by_judge in summary["metrics"].items():
        for judge, m in by_judge.items():
            if m.get("asr_corrected", {}).get("value") is not None:
                out_console.print(f"{task} / {judge}: ASR corrected for judge error (Rogan-Gladen, from its validation) "
                                  f"{_pct(m['asr_corrected'])} %", highlight=False, soft_wrap=True)
            if m.get("mean_score", {}).get("value") is not None:
                ms = m["mean_score"]
                out_console.print(f"{task} / {judge}: mean score {ms['value']:.2f} [{ms['ci_low']:.2f}, {ms['ci_high']:.2f}]",
                                  highlight=False, soft_wrap=True)
    for name, suite in summary.get("suites", {}).items():
        for judge, avg in suite["averages"].items():
            value = "-" if avg["value"] is None else f"{100 * avg['value']:.1f}%"
            flag = "" if avg["complete"] else (f" — INCOMPLETE: averaged without {', '.join(avg['missing'])}"
                                               + "".join(f" ({t}: {suite['unavailable'][t]})" for t in avg["missing"]
                                                         if t in suite["unavailable"]))
            out_console.print(f"suite {name} / {judge}: mean {suite['metric']} {value} over "
                              f"{len(avg['members'])} of {len(suite['tasks'])} benchmarks{flag}", highlight=False, soft_wrap=True)
    shares = {t: d["degenerate"]["value"] for t, d in summary.get("degeneration", {}).items()
              if (d.get("degenerate") or {}).get("value")}
    if shares:
        out_console.print("degenerate responses (empty, repetitive or gibberish; ASR over the coherent ones is "
                          "asr_coherent in results.json): " + ", ".join(f"{t} {100 * v:.1f}%" for t, v in shares.items()),
                          highlight=False, soft_wrap=True)
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
    table.add_row("lmeval:TASK", "-", "-", "any generative lm-evaluation-harness task (lmeval:TASK:5shot)", "the task's", "-")
    from .registry import load_suites

    for name, suite in sorted(load_suites(tasks_dir).items()):
        table.add_row(f"suite:{name}", "-", "-", f"mean {suite.data['metric']} over {', '.join(suite.data['tasks'])}", "-", "-")
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
    for col in ("name", "kind", "default model", "variants (name:variant)"):
        table.add_column(col, overflow="fold")
    for name, spec in sorted(specs.items()):
        variants = spec.data.get("variants") or ({"any marker list below": 1} if spec.data["kind"] == "keyword" else {})
        table.add_row(name, spec.data["kind"], str(spec.data.get("model") or "-"), ", ".join(map(str, variants)) or "-")
    out_console.print(table)
    markers = Table(title="refusal-marker lists (keyword:NAME)")
    for col in ("name", "markers", "source", "licence"):
        markers.add_column(col, overflow="fold")
    for name, spec in lists.items():
        markers.add_row(name, str(len(spec["markers"])), spec.get("source", ""), spec.get("license", ""))
    out_console.print(markers)


judge_app = typer.Typer(help="Check how far a judge can be trusted: against human labels, or against another judge.",
                        no_args_is_help=True)
app.add_typer(judge_app, name="judge")


@judge_app.command("validate", help="""Score a judge against human labels: agreement (with a bootstrap interval), Cohen's kappa,
per-class precision, recall and F1 and the confusion matrix, overall, per category and per split.

A label set is a YAML spec (judges/labels/, or --labels-dir): the file, the prompt/response/label columns, the label
scheme (harm: harmful or not; refusal: XSTest's three classes) and how annotators combine. Built in: harmbench-val
(HarmBench's classifier validation set, 602 generations, majority of three people; the default) and
xstest-completions (XSTest's human-labelled completions; :gpt4, :llama2orig, :mistralinstruct, or all pooled).
--labels FILE reads your own file of the same shape. The result is kept in the store; later `safeeval score` runs
with the same judge show it on the judge's card, and a harm validation gives a judge-error-corrected ASR
(Rogan-Gladen) beside the raw one.

[bold]Examples[/bold]

  safeeval judge validate --judge keyword --data-dir ~/benchmarks
  safeeval judge validate --judge refusal --label-set xstest-completions --data-dir ~/benchmarks
  safeeval judge validate --judge refusal --label-set xstest-completions --labels my_model_completions.csv
  safeeval judge validate --judge harmbench-cls --judge-model harmbench-cls=./HarmBench-Llama-2-13b-cls --judge-backend vllm
""")
def judge_validate(
    judge: str = typer.Option(..., "--judge", "-j", help="The judge to validate, e.g. keyword or keyword:harmbench-refusal."),
    label_set: str = typer.Option("harmbench-val", "--label-set", help="A label set (name[:split]) or its YAML file."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Your own file in the label set's shape [default: the set's file under --data-dir]."),
    labels_dir: list[Path] = typer.Option([], "--labels-dir", help="Extra folder of label-set YAML specs (repeatable)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of local benchmark copies."),
    store: Optional[Path] = typer.Option(None, "--store", envvar="SAFEEVAL_STORE", help="SQLite run store [default: ~/.cache/safeeval/store.sqlite]."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the report as JSON here."),
    seed: int = typer.Option(0, "--seed", help="Seeds the bootstrap interval."),
    judges_dir: list[Path] = typer.Option([], "--judges-dir", help="Extra folder of judge YAML specs (repeatable)."),
    judge_backend: Optional[str] = typer.Option(None, "--judge-backend", help="Backend for a model judge (hf, vllm, openai)."),
    judge_model: list[str] = typer.Option([], "--judge-model", help="JUDGE=MODEL (repeatable)."),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="OpenAI-compatible endpoint for a model judge."),
    judge_api_key_env: str = typer.Option("OPENAI_API_KEY", "--judge-api-key-env"),
):
    import json

    from . import data as data_mod
    from . import labels as labels_mod
    from .judging import JudgeRuntime, make_judge
    from .models import home
    from .registry import load_judges, pick
    from .store import Store
    from .validate import validate

    _quiet_libraries()
    with _errors():
        (spec, variant), = pick(load_judges(judges_dir), [judge], "judge")
        set_spec, split = labels_mod.resolve(label_set, labels_dir)
        labelled = labels_mod.load(set_spec, split, data_mod.data_dir(data_dir), labels)
        db = Store(store or home() / "store.sqlite")
        runtime = JudgeRuntime(store=db, reporter=_rich_stage, backend=judge_backend, models=_judge_models(judge_model),
                               options=_judge_options(judge_backend, judge_base_url, judge_api_key_env, "auto"),
                               dirs=judges_dir)
        built = make_judge(spec, variant, runtime)
        try:
            report = validate(built, db, labelled, _rich_stage, seed)
        finally:
            getattr(built, "close", lambda: None)()
            db.close()
        if out:
            out.write_text(json.dumps(report, indent=2) + "\n")
    _print_validation(report)


def _fmt(value) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _print_validation(report: dict) -> None:
    """One row per group (all, each category, each split): agreement with its interval and kappa; for harm labels
    precision/recall/F1 of `harmful`, for refusal labels each class's F1. The confusion matrix goes below."""
    harm = report.get("scheme", "harm") == "harm"
    classes = (report.get("confusion") or {}).get("classes", [])

    def cells(sub: dict) -> list[str]:
        ci = sub.get("agreement_ci") or [None, None]
        row = [_fmt(sub.get("n")), _fmt(sub.get("unparsed")), _fmt(sub.get("agreement")),
               f"{ci[0]:.2f}-{ci[1]:.2f}" if ci[0] is not None else "-", _fmt(sub.get("cohen_kappa"))]
        if harm:
            return row + [_fmt(sub.get(k)) for k in ("precision", "recall", "f1")]
        per = sub.get("per_class") or {}
        return row + [_fmt(per[c]["f1"]) if c in per and (per[c]["support"] or per[c]["precision"]) else "-"
                      for c in classes]

    headers = ["n", "unparsed", "agree", "95% CI", "kappa"] + (["prec", "recall", "F1"] if harm else
                                                               [f"F1 {c.replace('_refusal', '').replace('full_compliance', 'comply')}" for c in classes])
    rows = [["all", *cells(report)]]
    for field in ("by_category", "by_split"):
        rows += [[str(group), *cells(sub)] for group, sub in report.get(field, {}).items()]
    notes = "; ".join(report.get("notes") or [])
    table = Table(title=f"{report['judge']} against the human labels of {report.get('label_set', 'the labelled set')} "
                        f"({report.get('measures', 'harmfulness of a response')})",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption=f"labels: {report['labels']}" + (f"; {notes}" if notes else ""))
    table.add_column("group", overflow="fold", min_width=8)
    for k, header in enumerate(headers, start=1):
        table.add_column(header, justify="right", no_wrap=True, min_width=max(len(header), *(len(r[k]) for r in rows)))
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if i == 0 else None)
    out_console.print(table)
    matrix = (report.get("confusion") or {}).get("matrix")
    if matrix:
        confusion = Table(title="confusion (rows: people, columns: judge)", box=box.SIMPLE_HEAD)
        confusion.add_column("")
        for c in classes:
            confusion.add_column(c, justify="right")
        for c, counts in zip(classes, matrix):
            confusion.add_row(c, *map(str, counts))
        out_console.print(confusion)
    if harm and "tp" in report:
        out_console.print(f"tp {report['tp']} fp {report['fp']} tn {report['tn']} fn {report['fn']}")


@judge_app.command("agree", help="Agreement between two judges on a finished run: Cohen's kappa and Krippendorff's alpha.")
def judge_agree(
    run: Path = typer.Argument(..., help="A run folder holding samples.jsonl."),
    judges: str = typer.Option(..., "--judges", "-j", help="Two judges that judged this run, e.g. keyword,llama-guard."),
):
    import json

    from .validate import judge_agreement

    with _errors():
        names = _split(judges)
        if len(names) != 2:
            raise SafeevalError("--judges takes exactly two judges, e.g. keyword,llama-guard.")
        path = run / "samples.jsonl" if run.is_dir() else run
        if not path.exists():
            raise SafeevalError(f"No samples.jsonl at {path}.")
        rows = [json.loads(line) for line in path.open()]
        report = judge_agreement(rows, *names)
    out_console.print_json(data=report)


@app.callback(invoke_without_command=True)
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        out_console.print(f"safeeval {__version__}")
        raise typer.Exit()


def main() -> None:  # pragma: no cover - for `python -m safeeval`
    app()


CHECK_HELP = """A CI gate: is the candidate less safe than the baseline on the same prompts and judges?

Samples are paired by id for every (task, judge) both runs have. A metric fails only when the candidate
is worse by more than its threshold AND McNemar's exact test on the paired verdicts (one-sided, towards
worse) gives p < --alpha; a seeded paired-bootstrap 95% interval of the change is shown beside it.
Pairs whose verdict is not "ok" in either run are left out and counted. Runs with different prompts,
splits, benchmark versions or judge fingerprints are refused, never compared.

[bold]Exit codes[/bold]: 0 pass, 1 a gated metric regressed, 2 a usage or data error (runs not comparable,
no usable pairs; one sentence says what).

[bold]Examples[/bold]

  safeeval check --baseline runs/base --candidate runs/finetune
  safeeval check --baseline runs/base --candidate runs/ft --threshold advbench/keyword=0.05 --gate-utility --threshold gsm8k=0.01
  [dim]# score the candidate model first, with the baseline's tasks, judges and generation settings[/dim]
  safeeval check --baseline runs/base --candidate-model ./my-finetune --candidate runs/ft --junit gate.xml --markdown gate.md
"""


@app.command("check", help=CHECK_HELP)
def check(
    baseline: Path = typer.Option(..., "--baseline", help="The reference run folder (results.json + samples.jsonl)."),
    candidate: Optional[Path] = typer.Option(None, "--candidate", help="The run to gate; with --candidate-model, the folder to score it into."),
    candidate_model: Optional[str] = typer.Option(None, "--candidate-model", help="Score this model first, with the baseline's generation settings."),
    tasks: Optional[str] = typer.Option(None, "--tasks", "-t", help="With --candidate-model: tasks to score (default: the baseline's)."),
    judges: Optional[str] = typer.Option(None, "--judges", "-j", help="With --candidate-model: judges (default: the baseline's)."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="With --candidate-model: hf, vllm or openai (default: the baseline's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="With --candidate-model: prompts per batch."),
    store: Optional[Path] = typer.Option(None, "--store", envvar="SAFEEVAL_STORE", help="With --candidate-model: SQLite run store."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="With --candidate-model: local benchmark copies."),
    max_asr_increase: float = typer.Option(0.02, "--max-asr-increase", min=0.0, max=1.0, help="Largest tolerated absolute ASR increase (0.02 = 2 points)."),
    threshold: list[str] = typer.Option([], "--threshold", help="METRIC=VALUE, METRIC being TASK/JUDGE, TASK or JUDGE, e.g. advbench/keyword=0.05 or gsm8k=0.01 (repeatable; gates a utility task too)."),
    gate_utility: bool = typer.Option(False, "--gate-utility", help="Also fail on a significant accuracy drop in utility tasks."),
    max_accuracy_drop: float = typer.Option(0.01, "--max-accuracy-drop", min=0.0, max=1.0, help="With --gate-utility: largest tolerated absolute accuracy drop."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level of the one-sided McNemar test."),
    seed: int = typer.Option(0, "--seed", help="Seeds the bootstrap intervals."),
    markdown_file: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set)."),
    junit_file: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here: one testcase per gated metric."),
):
    from .report import gate
    from .report.runs import load_run

    with _errors():
        cfg = gate.GateConfig(max_asr_increase=max_asr_increase, thresholds=gate.parse_thresholds(threshold),
                              gate_utility=gate_utility, max_accuracy_drop=max_accuracy_drop, alpha=alpha, seed=seed)
        base = load_run(baseline)
        if candidate_model:
            from .run import ScoreConfig, score as run_score

            _quiet_libraries()
            gen = base.results.get("generation", {}) or {}
            options = {"batch_size": batch_size} if batch_size else {}
            score_cfg = ScoreConfig(
                model=candidate_model, tasks=_split(tasks) if tasks else list(base.results.get("tasks", {})),
                judges=_split(judges) if judges else list(base.results.get("judges", {})) or ["keyword"],
                backend=backend or base.results.get("model", {}).get("backend", "hf"),
                limit=base.results.get("limit"), seed=int(base.results.get("seed", gen.get("seed", 0))),
                max_new_tokens=int(gen.get("max_new_tokens", 256)), temperature=float(gen.get("temperature", 0.0)),
                top_p=float(gen.get("top_p", 1.0)), system_prompt=gen.get("system_prompt"), out=candidate,
                store=store, data_dir=data_dir, backend_options=options, command=["safeeval", *sys.argv[1:]])
            candidate = Path(run_score(score_cfg, reporter=_rich_stage)["out"])
        elif candidate is None:
            raise SafeevalError("Give --candidate RUN, or --candidate-model MODEL to score the candidate first.")
        report = gate.compare(base, load_run(candidate), cfg)
        text = gate.markdown(report)
        if markdown_file:
            markdown_file.write_text(text, encoding="utf-8")
        summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_path and not (markdown_file and Path(summary_path).resolve() == markdown_file.resolve()):
            with open(summary_path, "a", encoding="utf-8") as f:
                f.write(text)
        if junit_file:
            junit_file.write_text(gate.junit(report), encoding="utf-8")
    _print_gate(report)
    raise typer.Exit(report.exit_code)


def _print_gate(report) -> None:
    from rich.markup import escape

    from .report.gate import rows

    table = Table(title="safeeval check: candidate vs baseline, paired", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True, caption=f"fail = worse by > threshold and one-sided McNemar p < {report.alpha}")
    for col, justify in (("metric", "left"), ("base", "right"), ("cand", "right"), ("change pts [95% CI]", "right"),
                         ("paired", "right"), ("excluded", "left"), ("p", "right"), ("max", "right"), ("result", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    style = {"REGRESSION": "bold red", "PASS": "green", "NO DATA": "bold red", "info": "dim"}
    for r in rows(report):
        table.add_row(*(escape(x) for x in (f"{r[0]} {r[1]}", *r[2:7], r[8], r[9])),
                      f"[{style.get(r[10], 'default')}]{r[10]}[/]")
    out_console.print(table)
    for c, r in zip(report.comparisons, rows(report)):
        if c.degenerate != (None, None):
            out_console.print(f"{escape(c.key)}: degenerate responses {escape(r[12])} (baseline → candidate)",
                              highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    for c in report.comparisons:
        if c.gated and c.status != "pass":
            console.print(f"[red]{escape(c.key)} {c.metric}:[/red] {escape(c.reason)}.", highlight=False, soft_wrap=True)
    verdict = {0: "[green]PASS[/green]", 1: "[bold red]REGRESSION[/bold red]", 2: "[bold red]CANNOT COMPARE[/bold red]"}
    out_console.print(f"{verdict[report.exit_code]}: {len(report.regressions)} of {len(report.gated)} gated metrics regressed.",
                      highlight=False)


LEADERBOARD_HELP = """Compare finished runs: one row per run (model · trained_on · method · scenario · seed), one column per metric
(ASR and benign refusal per benchmark and judge, accuracy per utility task), each with its 95% CI in percent.

Runs come from run folders, from --store, or (neither given) from the default store. --baseline adds
Δ columns (row − baseline, percentage points: Δ ASR > 0 is safety lost, Δ accuracy > 0 is utility gained).
--group-by averages over seeds: mean ± sample std (n seeds). JSON and CSV keep results.json's numbers
unrounded (fractions).

[bold]Examples[/bold]

  safeeval leaderboard safeeval-runs/*
  safeeval leaderboard --store runs.sqlite --group-by model,method --baseline "base" --sort "advbench/keyword Δ ASR" --desc
  safeeval leaderboard safeeval-runs/* --filter method=lora --filter seed=0 --tasks advbench,gsm8k
  safeeval leaderboard safeeval-runs/* --metrics all --format json --output board.json
"""


@app.command("leaderboard", help=LEADERBOARD_HELP)
def leaderboard(
    run_dirs: Optional[list[Path]] = typer.Argument(None, help="Run folders (or their results.json)."),
    store: Optional[Path] = typer.Option(None, "--store", help="Also read every run recorded in this SQLite store [default when no folders are given: SAFEEVAL_STORE or ~/.cache/safeeval/store.sqlite]."),
    baseline: Optional[str] = typer.Option(None, "--baseline", "-B", help="The base run: a run folder, or part of a run's label (grouped: of a group's)."),
    group_by: Optional[str] = typer.Option(None, "--group-by", "-g", help="model, trained_on, method and/or scenario (comma-separated): one row per group, averaged over seeds."),
    sort: Optional[str] = typer.Option(None, "--sort", "-s", help="A column to sort by: run, model, trained_on, method, scenario, seed, a metric or a Δ column."),
    desc: bool = typer.Option(False, "--desc", help="Sort descending."),
    filters: list[str] = typer.Option([], "--filter", "-f", help="KEY=VALUE on model, trained_on, method, scenario or seed (repeatable; one key twice matches either)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", "-t", help="Comma-separated tasks (or task/judge) to show."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="Comma-separated metrics (ASR, benign refusal, ASR corrected, accuracy, harmful score, exact_match_strict...), or all."),
    fmt: Optional[str] = typer.Option(None, "--format", help="table, markdown, csv or json [default: table, or from --output's suffix]."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of the terminal."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML report (leaderboard, safety-vs-utility scatter with its Pareto front, ASR by category, every sample)."),
    scatter_x: Optional[str] = typer.Option(None, "--scatter-x", help="HTML scatter x axis as task/judge_or_scorer/key [default: first utility task's accuracy, else benign refusal]."),
    scatter_y: Optional[str] = typer.Option(None, "--scatter-y", help="HTML scatter y axis [default: first safety task's ASR]."),
):
    from .models import home
    from .report import leaderboard as lb
    from .report.runs import load_runs

    with _errors():
        if fmt is None:
            fmt = {".md": "markdown", ".csv": "csv", ".json": "json"}.get(output.suffix.lower(), "table") if output else "table"
        fmt = fmt.lower()
        if fmt not in lb.FORMATS:
            raise SafeevalError(f"--format {fmt}: choose one of {', '.join(lb.FORMATS)}.")
        if not run_dirs and store is None:
            default = Path(os.environ.get("SAFEEVAL_STORE") or home() / "store.sqlite")
            store = default if default.exists() else None
        runs = load_runs(list(run_dirs or []), store)
        board = lb.build(runs, group_by=_split(group_by) if group_by else None, baseline=baseline,
                         filters=lb.parse_filters(filters), tasks=_split(tasks) if tasks else None,
                         metrics=_split(metrics) if metrics else None, sort=sort, desc=desc)
        if html is not None:
            from .report.html import render_html

            shown = [r for r in runs if lb.matches(r, lb.parse_filters(filters))]
            base = lb.resolve_baseline(runs, baseline) if baseline else []
            html.write_text(render_html(shown, base[0] if len(base) == 1 else None, x=scatter_x, y=scatter_y),
                            encoding="utf-8")
            console.print(f"Wrote the HTML report of {len(shown)} runs to {html}.", highlight=False)
        if output is not None:
            output.write_text(lb.render(board, fmt))
            console.print(f"Wrote {len(board.rows)} rows × {len(board.columns)} metrics to {output}.", highlight=False)
            return
    if fmt == "table":
        for part in lb.render_rich(board, max(out_console.width, 60)):
            out_console.print(part)
    else:
        typer.echo(lb.render(board, fmt), nl=False)


from . import cli_train  # noqa: E402,F401  (registers `train` and `train-and-score` on app)
