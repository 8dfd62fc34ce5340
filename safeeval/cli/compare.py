"""`safeeval compare`: each method against a reference method or run, with paired tests; never calls a model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import SafeevalError
from ..registry import name_list, named_numbers
from . import ui

HELP = """Test each method against a reference on its own runs: the paired difference per task, judge and metric (ASR,
benign refusal, utility), its 95% interval, and whether it is significant once corrected across the methods.

Runs are grouped by the user's task and scenario; within each group, --against names the reference: a method (its
runs there, one per seed: e.g. sft) or a run (a folder or part of a label: e.g. the aligned model, one run for every
group). Prompts are paired by id; seeds are strata (stratified Cochran-Mantel-Haenszel test, paired bootstrap
interval within seeds); Holm's correction runs over the methods compared on each metric, and the family is
printed with it. --margin TASK=POINTS tests a "no worse than" claim by TOST: shown, not shown, or underpowered
(the data cannot support it at that margin).

[bold]Examples[/bold]

  safeeval compare safeeval-runs/mini-repro/*/score --against sft
  safeeval compare runs/* --against runs/aligned --margin sst2=1.2 --margin advbench=2
  safeeval compare runs/* --against sft --tasks gsm8k --equivalence --margin gsm8k=1 --format json
"""


def compare(
    run_dirs: list[Path] | None = typer.Argument(None, help="Run folders (they must hold samples.jsonl)."),
    against: str = typer.Option(
        ..., "--against", "-a", help="The reference: a method (e.g. sft) or a run (folder, or part of its label)."
    ),
    margins: list[str] = typer.Option(
        [],
        "--margin",
        help="TASK=POINTS: test that each method is no worse than the reference by more than POINTS percentage "
        "points (TOST; repeatable).",
    ),
    equivalence: bool = typer.Option(
        False, "--equivalence", help="With --margin: test equivalence (within ± the margin) instead of non-inferiority."
    ),
    tasks: str | None = typer.Option(
        None, "--tasks", "-t", help="Comma-separated tasks (or task/judge) to compare \\[default: all]."
    ),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0001, max=0.5, help="Family-wise error rate of each family."),
    store: Path | None = typer.Option(None, "--store", help="Also read every run recorded in this SQLite store."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
):
    from ..report.compare import compare as run_compare
    from ..report.compare import headers, rows
    from ..report.runs import load_runs

    with ui.errors():
        if fmt not in ("table", "json"):
            raise SafeevalError(f"--format {fmt}: choose table or json.")
        runs = load_runs(list(run_dirs or []), store)
        found = run_compare(
            runs,
            against,
            margins=parse_margins(margins),
            equivalence=equivalence,
            tasks=name_list(tasks) if tasks else None,
            alpha=alpha,
        )
    if fmt == "json":
        typer.echo(json.dumps([c.to_dict() for c in found], indent=2, ensure_ascii=False))
        return
    for c in found:
        ui.table(
            f"{c.stratum}: {c.family.metric} against {c.family.reference}",
            headers(c),
            rows(c),
            "auto",
            caption=c.family.statement,
        )
        for note in c.notes:
            ui.note(note)


def parse_margins(items: list[str]) -> dict[str, float]:
    """['sst2=1.2'] -> {'sst2': 0.012}: margins are given in percentage points, used as fractions."""
    shape = "TASK=POINTS with POINTS > 0, e.g. sst2=1.2 (percentage points)"
    return {task: points / 100 for task, points in named_numbers(items, "--margin", shape, lambda v: v > 0).items()}
