"""`safeeval sweep`: a whole study from one YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..progress import quiet_libraries
from . import ui

HELP = """Run a whole study from one YAML file: reference models scored as they are, an alignment run, then a grid of fine-tuning runs (task x scenario x method x seed), each trained and scored; finally the leaderboard (markdown, CSV) and the HTML report.

Interrupted? Run the same command again: finished training folders are not retrained and the store serves every generation and verdict already made.

[bold]Examples[/bold]

  safeeval sweep configs/mini-repro.yaml --data-dir ../shared/data
  safeeval sweep configs/mini-repro.yaml --dry-run
  safeeval sweep configs/mini-repro.yaml --report-only   # publish what has finished so far
"""


def sweep(
    config: Path = typer.Argument(..., help="The sweep's YAML file (see configs/mini-repro.yaml)."),
    store: Optional[Path] = typer.Option(None, "--store", help="SQLite run store \\[default: $SAFEEVAL_STORE, else ~/.cache/safeeval/store.sqlite]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the file and list the steps; run nothing."),
    report_only: bool = typer.Option(False, "--report-only", help="Run nothing: write the leaderboard and report from the steps finished so far, and list the ones that are not."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of the benchmark files (else the sweep file's data_dir)."),
):
    from ..sweep import load_sweep, run_sweep

    quiet_libraries(ui.VERBOSE)
    with ui.errors():
        if dry_run:
            _, steps = load_sweep(config, data_dir)
            for i, step in enumerate(steps, 1):
                what = step.model if step.kind == "reference" else (
                    f"{step.train.method} {step.train.method_options or ''} on {step.train.task} "
                    f"({step.train.scenario}, seed {step.train.seed}) from {step.train.base}")
                ui.out_console.print(f"{i:>3}. {step.kind:<9} {step.name}: {what}; scored on {', '.join(step.tasks)}",
                                     highlight=False, soft_wrap=True, markup=False)
            return
        summary = run_sweep(config, ui.stage, ui.say, store, data_dir=data_dir, report_only=report_only,
                            verbose=ui.VERBOSE)
    done = (f"{summary['steps']} finished steps reported ({len(summary['missing'])} not finished)" if report_only
            else f"{summary['steps']} steps in {summary['seconds'] / 60:.1f} min")
    ui.out_console.print(f"{done}. Leaderboard: {summary['leaderboard']}; report: {summary['html']}",
                         highlight=False, soft_wrap=True, markup=False)
