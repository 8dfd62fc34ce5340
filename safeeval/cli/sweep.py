"""`safeeval sweep`: a whole study from one YAML file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from ..progress import quiet_libraries
from . import ui

HELP = """Run a whole study from one YAML file: reference models scored as they are, an alignment run, then a grid of
fine-tuning runs (task x scenario x method x seed), each trained and scored; finally the leaderboard (markdown, CSV)
and the HTML report.

Interrupted? Run the same command again: finished training folders are not retrained and the store serves every
generation and verdict already made.

[bold]Examples[/bold]

  safeeval sweep configs/mini-repro.yaml --data-dir ../shared/data
  safeeval sweep configs/mini-repro.yaml --dry-run
  safeeval sweep configs/mini-repro.yaml --report-only   # publish what has finished so far
  safeeval sweep configs/mini-repro.yaml --ray auto      # every step a task on a running Ray cluster

[bold]On a Ray cluster[/bold] (pip install 'safeeval\\[ray]'): --ray auto joins the cluster `ray start` made (or
RAY_ADDRESS), --ray HOST:PORT a given one, --ray local starts one on this machine. Independent steps run at once, each
on one node with the resources the file's `resources:` asks for; the sweep's runs folder must be on a filesystem every
node shares. Steps already finished are not run again; a failed step is listed and the steps that need it are skipped
(exit code 1).
"""


# Long only by its signature: a typer command declares one parameter per flag; the work is in the library.
def sweep(
    config: Path = typer.Argument(..., help="The sweep's YAML file (see configs/mini-repro.yaml)."),
    store: Path | None = typer.Option(
        None, "--store", help="SQLite run store \\[default: $SAFEEVAL_STORE, else ~/.cache/safeeval/store.sqlite]."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the file and list the steps; run nothing."),
    report_only: bool = typer.Option(
        False,
        "--report-only",
        help="Run nothing: write the leaderboard and report from the steps finished so far, and list the ones that "
        "are not.",
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        envvar="SAFEEVAL_DATA_DIR",
        help="Folder of the benchmark files (else the sweep file's data_dir).",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="auto|local|HOST:PORT",
        help="Run every step as a Ray task: auto (the cluster `ray start` made, or RAY_ADDRESS), local (a cluster "
        "on this machine) or a cluster's address.",
    ),
):
    from ..sweep import load_sweep, run_sweep

    quiet_libraries(ui.VERBOSE)
    with ui.errors():
        if dry_run:
            _, steps = load_sweep(config, data_dir)
            for i, step in enumerate(steps, 1):
                what = (
                    step.model
                    if step.kind == "reference"
                    else (
                        f"{step.train.method} {step.train.method_options or ''} on {step.train.task} "
                        f"({step.train.scenario}, seed {step.train.seed}) from {step.train.base}"
                    )
                )
                scored = f"scored on {', '.join(step.tasks)}" if step.tasks else "not scored: the run merges edit"
                after = f"; after {', '.join(step.after)}" if step.after else ""
                ui.out_console.print(
                    f"{i:>3}. {step.kind:<9} {step.name}: {what}; {scored}{after}",
                    highlight=False,
                    soft_wrap=True,
                    markup=False,
                )
            return
        if ray is not None and not report_only:
            from ..cluster import run_on_ray

            summary = run_on_ray(config, ray, ui.stage, ui.say, store, data_dir=data_dir, verbose=ui.VERBOSE)
        else:
            summary = run_sweep(
                config, ui.stage, ui.say, store, data_dir=data_dir, report_only=report_only, verbose=ui.VERBOSE
            )
    if report_only:
        done = f"{summary['steps']} finished steps reported ({len(summary['missing'])} not finished)"
    elif "ran" in summary:
        done = (
            f"{summary['steps']} steps ({summary['ran']} run on Ray, {summary['finished_before']} finished "
            f"before) in {summary['seconds'] / 60:.1f} min"
        )
    else:
        done = f"{summary['steps']} steps in {summary['seconds'] / 60:.1f} min"
    if summary.get("leaderboard"):
        done += f". Leaderboard: {summary['leaderboard']}; report: {summary['html']}"
    ui.out_console.print(done, highlight=False, soft_wrap=True, markup=False)
    conflicts = {table: c["conflicts"] for table, c in (summary.get("merged") or {}).items() if c.get("conflicts")}
    if conflicts:
        ui.note(
            f"merging the steps' shards met keys with another value already in the store ("
            f"{', '.join(f'{n} {t}' for t, n in conflicts.items())}): the store kept its own; the others are in "
            "its merge_conflicts table."
        )
    if summary.get("failed") or summary.get("skipped"):
        for name in summary["failed"]:
            error = summary["timeline"][name]["error"]
            ui.console.print(f"[red]failed:[/red] {escape(name)}: {escape(error)}", highlight=False, soft_wrap=True)
        if summary["skipped"]:
            ui.say(f"not run, as they need a failed step: {', '.join(summary['skipped'])}")
        raise typer.Exit(1)
