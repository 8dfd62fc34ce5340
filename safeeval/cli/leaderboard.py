"""`safeeval leaderboard`: finished runs side by side; never calls a model."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import SafeevalError
from ..registry import name_list
from . import ui

HELP = """Compare finished runs: one row per run (model · trained_on · method · scenario · seed), one column per metric
(ASR and benign refusal per benchmark and judge, accuracy per utility task), each with its 95% CI in percent.

Runs come from run folders, from --store, or (neither given) from the default store. --baseline adds
Δ columns (row − baseline, percentage points: Δ ASR > 0 is safety lost, Δ accuracy > 0 is utility gained);
a Δ of ASR, benign refusal or accuracy that a paired test finds significant (Holm over the rows) is marked *.
--group-by averages over seeds: mean ± sample std (n seeds). Under the table: each judge's card (or
unvalidated), and the scores whose prompts a model was trained on (marked ‡). JSON and CSV keep results.json's
numbers unrounded (fractions). `safeeval compare` gives the tests' intervals and p-values.

[bold]Examples[/bold]

  safeeval leaderboard safeeval-runs/*
  safeeval leaderboard --store runs.sqlite --group-by model,method --baseline "base" \\
      --sort "advbench/keyword Δ ASR" --desc
  safeeval leaderboard safeeval-runs/* --filter method=lora --filter seed=0 --tasks advbench,gsm8k
  safeeval leaderboard safeeval-runs/* --metrics all --format json --output board.json
"""


# Long only by its signature: a typer command declares one parameter per flag; the work is in the library.
def leaderboard(
    run_dirs: list[Path] | None = typer.Argument(None, help="Run folders (or their results.json)."),
    store: Path | None = typer.Option(
        None,
        "--store",
        help="Also read every run recorded in this SQLite store \\[default when no folders are given: "
        "$SAFEEVAL_STORE or ~/.cache/safeeval/store.sqlite].",
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", "-B", help="The base run: a run folder, or part of a run's label (grouped: of a group's)."
    ),
    group_by: str | None = typer.Option(
        None,
        "--group-by",
        "-g",
        help="model, trained_on, method and/or scenario (comma-separated): one row per group, averaged over seeds.",
    ),
    sort: str | None = typer.Option(
        None,
        "--sort",
        "-s",
        help="A column to sort by: run, model, trained_on, method, scenario, seed, a metric or a Δ column.",
    ),
    desc: bool = typer.Option(False, "--desc", help="Sort descending."),
    filters: list[str] = typer.Option(
        [],
        "--filter",
        "-f",
        help="KEY=VALUE on model, trained_on, method, scenario or seed (repeatable; one key twice matches either).",
    ),
    tasks: str | None = typer.Option(None, "--tasks", "-t", help="Comma-separated tasks (or task/judge) to show."),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        "-m",
        help="Comma-separated metrics (ASR, benign refusal, ASR corrected, accuracy, harmful score, "
        "exact_match_strict...), or all.",
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="table, markdown, csv or json \\[default: table, or from --output's suffix]."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of the terminal."),
    html: Path | None = typer.Option(
        None,
        "--html",
        help="Also write a self-contained HTML report (leaderboard, safety-vs-utility scatter with its Pareto "
        "front, ASR by category, every sample or --html-samples of each task).",
    ),
    html_samples: int | None = typer.Option(
        None,
        "--html-samples",
        min=0,
        help="List at most this many samples per task and run in the HTML report \\[default: all]; every sample "
        "stays in its run's samples.jsonl, which the page names.",
    ),
    scatter_x: str | None = typer.Option(
        None,
        "--scatter-x",
        help="HTML scatter x axis as task/judge_or_scorer/key \\[default: first utility task's accuracy, else "
        "benign refusal].",
    ),
    scatter_y: str | None = typer.Option(
        None, "--scatter-y", help="HTML scatter y axis \\[default: first safety task's ASR]."
    ),
):
    from ..files import store_path
    from ..report import leaderboard as lb
    from ..report.html import render_html
    from ..report.runs import load_runs

    with ui.errors():
        if fmt is None:
            fmt = (
                {".md": "markdown", ".csv": "csv", ".json": "json"}.get(output.suffix.lower(), "table")
                if output
                else "table"
            )
        fmt = fmt.lower()
        if fmt not in lb.FORMATS:
            raise SafeevalError(f"--format {fmt}: choose one of {', '.join(lb.FORMATS)}.")
        if not run_dirs and store is None:
            store = store_path() if store_path().exists() else None
        runs = load_runs(list(run_dirs or []), store)
        chosen = lb.parse_filters(filters)
        board = lb.build(
            runs,
            group_by=name_list(group_by) if group_by else None,
            baseline=baseline,
            filters=chosen,
            tasks=name_list(tasks) if tasks else None,
            metrics=name_list(metrics) if metrics else None,
            sort=sort,
            desc=desc,
        )
        if html is not None:
            shown = [r for r in runs if lb.matches(r, chosen)]
            html.write_text(
                render_html(
                    shown, lb.single_baseline(runs, baseline), x=scatter_x, y=scatter_y, max_samples=html_samples
                ),
                encoding="utf-8",
            )
            ui.say(f"Wrote the HTML report of {len(shown)} runs to {html}.")
        if output is not None:
            output.write_text(lb.render(board, fmt))
            ui.say(f"Wrote {len(board.rows)} rows × {len(board.columns)} metrics to {output}.")
            return
    if fmt == "table":
        for part in lb.render_rich(board, max(ui.out_console.width, 60)):
            ui.out_console.print(part)
    else:
        typer.echo(lb.render(board, fmt), nl=False)
