"""`safeeval judge validate` and `safeeval judge agree`: how far a judge can be trusted."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import SafeevalError
from ..progress import quiet_libraries
from ..registry import name_list
from . import ui
from .score import judge_models

app = typer.Typer(
    help="Check how far a judge can be trusted: against human labels, or against another judge.", no_args_is_help=True
)

VALIDATE_HELP = """Score a judge against human labels: agreement (with a bootstrap interval), Cohen's kappa,
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
  safeeval judge validate --judge harmbench-cls --judge-backend vllm \\
      --judge-model harmbench-cls=./HarmBench-Llama-2-13b-cls
"""


# Long only by its signature: a typer command declares one parameter per flag; the work is in the library.
@app.command("validate", help=VALIDATE_HELP)
def validate(
    judge: str = typer.Option(
        ..., "--judge", "-j", help="The judge to validate, e.g. keyword or keyword:harmbench-refusal."
    ),
    label_set: str = typer.Option("harmbench-val", "--label-set", help="A label set (name[:split]) or its YAML file."),
    labels: Path | None = typer.Option(
        None, "--labels", help="Your own file in the label set's shape \\[default: the set's file under --data-dir]."
    ),
    labels_dir: list[Path] = typer.Option(
        [], "--labels-dir", help="Extra folder of label-set YAML specs (repeatable)."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of local benchmark copies."
    ),
    store: Path | None = typer.Option(
        None, "--store", help="SQLite run store \\[default: $SAFEEVAL_STORE, else ~/.cache/safeeval/store.sqlite]."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the report as JSON here."),
    seed: int = typer.Option(0, "--seed", help="Seeds the bootstrap interval."),
    judges_dir: list[Path] = typer.Option([], "--judges-dir", help="Extra folder of judge YAML specs (repeatable)."),
    judge_backend: str | None = typer.Option(
        None, "--judge-backend", help="Backend for a model judge (hf, vllm, openai)."
    ),
    judge_model: list[str] = typer.Option([], "--judge-model", help="JUDGE=MODEL (repeatable)."),
    judge_base_url: str | None = typer.Option(
        None, "--judge-base-url", help="OpenAI-compatible endpoint for a model judge."
    ),
    judge_api_key_env: str | None = typer.Option(
        None, "--judge-api-key-env", help="Name of the environment variable holding its key."
    ),
):
    from .. import data as data_mod
    from .. import labels as labels_mod
    from ..files import store_path, write_json
    from ..judging import JudgeRuntime, make_judge
    from ..registry import load_judges, pick
    from ..store import Store
    from ..validate import validate as run_validation

    quiet_libraries(ui.VERBOSE)
    with ui.errors():
        ((spec, variant),) = pick(load_judges(judges_dir), [judge], "judge")
        set_spec, split = labels_mod.resolve(label_set, labels_dir)
        labelled = labels_mod.load(set_spec, split, data_mod.data_dir(data_dir), labels)
        db = Store(store_path(store))
        options = {k: v for k, v in (("base_url", judge_base_url), ("api_key_env", judge_api_key_env)) if v}
        runtime = JudgeRuntime(
            store=db,
            reporter=ui.stage,
            backend=judge_backend,
            models=judge_models(judge_model),
            options=options,
            dirs=judges_dir,
        )
        built = make_judge(spec, variant, runtime)
        try:
            report = run_validation(built, db, labelled, ui.stage, seed)
        finally:
            getattr(built, "close", lambda: None)()
            db.close()
        if out:
            write_json(out, report)
    _print_validation(report)


def _fmt(value) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _short(cls: str) -> str:
    return cls.replace("_refusal", "").replace("full_compliance", "comply")


def _print_validation(report: dict) -> None:
    """One row per group (all, each category, each split): agreement with its interval and kappa; for harm labels
    precision/recall/F1 of `harmful`, for refusal labels each class's F1. The confusion matrix goes below."""
    harm = report.get("scheme", "harm") == "harm"
    classes = (report.get("confusion") or {}).get("classes", [])

    def cells(sub: dict) -> list[str]:
        ci = sub.get("agreement_ci") or [None, None]
        row = [
            _fmt(sub.get("n")),
            _fmt(sub.get("unparsed")),
            _fmt(sub.get("agreement")),
            f"{ci[0]:.2f}-{ci[1]:.2f}" if ci[0] is not None else "-",
            _fmt(sub.get("cohen_kappa")),
        ]
        if harm:
            return row + [_fmt(sub.get(k)) for k in ("precision", "recall", "f1")]
        per = sub.get("per_class") or {}
        return row + [
            _fmt(per[c]["f1"]) if c in per and (per[c]["support"] or per[c]["precision"]) else "-" for c in classes
        ]

    headers = ["n", "unparsed", "agree", "95% CI", "kappa"]
    headers += ["prec", "recall", "F1"] if harm else [f"F1 {_short(c)}" for c in classes]
    rows = [["all", *cells(report)]]
    for field in ("by_category", "by_split"):
        rows += [[str(group), *cells(sub)] for group, sub in report.get(field, {}).items()]
    notes = "; ".join(report.get("notes") or [])
    title = (
        f"{report['judge']} against the human labels of {report.get('label_set', 'the labelled set')} "
        f"({report.get('measures', 'harmfulness of a response')})"
    )
    ui.table(
        title,
        [("group", "left"), *((h, "right") for h in headers)],
        rows,
        "auto",
        f"labels: {report['labels']}" + (f"; {notes}" if notes else ""),
    )
    matrix = (report.get("confusion") or {}).get("matrix")
    if matrix:
        ui.table(
            "confusion (rows: people, columns: judge)",
            [("people", "left"), *((c, "right") for c in classes)],
            [[c, *map(str, counts)] for c, counts in zip(classes, matrix)],
            "auto",
        )
    if harm and "tp" in report:
        ui.out_console.print(
            f"tp {report['tp']} fp {report['fp']} tn {report['tn']} fn {report['fn']}", highlight=False
        )


@app.command("agree", help="Agreement between two judges on a finished run: Cohen's kappa and Krippendorff's alpha.")
def agree(
    run: Path = typer.Argument(..., help="A run folder holding samples.jsonl."),
    judges: str = typer.Option(
        ..., "--judges", "-j", help="Two judges that judged this run, e.g. keyword,llama-guard."
    ),
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
