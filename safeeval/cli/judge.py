"""`safeeval judge validate` and `safeeval judge agree`: how far a judge can be trusted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import SafeevalError
from ..progress import quiet_libraries
from ..registry import name_list
from . import ui
from .score import judge_models

app = typer.Typer(help="Check how far a judge can be trusted: against human labels, or against another judge.",
                  no_args_is_help=True)

VALIDATE_HELP = """Score a judge against human labels: agreement with the majority label, Cohen's kappa,
precision, recall, F1 and the confusion matrix, overall and per category.

The default labels are HarmBench's classifier validation set (602 generations, three human labels each),
read from --data-dir. The result is kept in the store, and later `safeeval score` runs with the same judge
report a judge-error-corrected ASR (Rogan-Gladen) beside the raw one.

[bold]Examples[/bold]

  safeeval judge validate --judge keyword --data-dir ~/benchmarks
  safeeval judge validate --judge harmbench-cls --judge-model harmbench-cls=./HarmBench-Llama-2-13b-cls --judge-backend vllm
  safeeval judge validate --judge rubric --labels my_labels.json --judge-backend openai
"""


@app.command("validate", help=VALIDATE_HELP)
def validate(
    judge: str = typer.Option(..., "--judge", "-j", help="The judge to validate, e.g. keyword or keyword:harmbench-refusal."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="A file shaped like HarmBench's text_behaviors_val_set.json \\[default: from --data-dir]."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of local benchmark copies."),
    store: Optional[Path] = typer.Option(None, "--store", help="SQLite run store \\[default: $SAFEEVAL_STORE, else ~/.cache/safeeval/store.sqlite]."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the report as JSON here."),
    judges_dir: list[Path] = typer.Option([], "--judges-dir", help="Extra folder of judge YAML specs (repeatable)."),
    judge_backend: Optional[str] = typer.Option(None, "--judge-backend", help="Backend for a model judge (hf, vllm, openai)."),
    judge_model: list[str] = typer.Option([], "--judge-model", help="JUDGE=MODEL (repeatable)."),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="OpenAI-compatible endpoint for a model judge."),
    judge_api_key_env: Optional[str] = typer.Option(None, "--judge-api-key-env", help="Name of the environment variable holding its key."),
):
    from .. import data as data_mod
    from ..files import store_path, write_json
    from ..judging import JudgeRuntime, make_judge
    from ..registry import load_judges, pick
    from ..store import Store
    from ..validate import validate as run_validation

    quiet_libraries(ui.VERBOSE)
    with ui.errors():
        (spec, variant), = pick(load_judges(judges_dir), [judge], "judge")
        db = Store(store_path(store))
        options = {k: v for k, v in (("base_url", judge_base_url), ("api_key_env", judge_api_key_env)) if v}
        runtime = JudgeRuntime(store=db, reporter=ui.stage, backend=judge_backend, models=judge_models(judge_model),
                               options=options, dirs=judges_dir)
        built = make_judge(spec, variant, runtime)
        try:
            report = run_validation(built, db, labels, data_mod.data_dir(data_dir), ui.stage)
        finally:
            getattr(built, "close", lambda: None)()
            db.close()
        if out:
            write_json(out, report)
    _print_validation(report)


def _fmt(value) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _print_validation(report: dict) -> None:
    cols = {"n": "n", "unparsed": "unparsed", "agreement": "agree", "cohen_kappa": "kappa", "precision": "prec",
            "recall": "recall", "f1": "F1"}
    rows = [["all", *(_fmt(report.get(c)) for c in cols)]]
    rows += [[cat, *(_fmt(sub.get(c)) for c in cols)] for cat, sub in report.get("by_category", {}).items()]
    caption = (f"labels: {report['labels']}; confusion tp {report.get('tp')} fp {report.get('fp')} "
               f"tn {report.get('tn')} fn {report.get('fn')}")
    ui.table(f"{report['judge']} against the human majority label",
             [("category", "left"), *((h, "right") for h in cols.values())], rows, "auto", caption)


@app.command("agree", help="Agreement between two judges on a finished run: Cohen's kappa and Krippendorff's alpha.")
def agree(
    run: Path = typer.Argument(..., help="A run folder holding samples.jsonl."),
    judges: str = typer.Option(..., "--judges", "-j", help="Two judges that judged this run, e.g. keyword,llama-guard."),
):
    from ..validate import judge_agreement

    with ui.errors():
        names = name_list(judges)
        if len(names) != 2:
            raise SafeevalError("--judges takes exactly two judges, e.g. keyword,llama-guard.")
        path = run / "samples.jsonl" if run.is_dir() else run
        if not path.exists():
            raise SafeevalError(f"No samples.jsonl at {path}.")
        rows = [json.loads(line) for line in path.open()]
        report = judge_agreement(rows, *names)
    ui.out_console.print_json(data=report)
