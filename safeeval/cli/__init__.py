"""The `safeeval` command: thin typer commands that parse, call the library and render.

Each command lives in its own module and is registered here, explicitly; nothing below this package imports it.
"""

from __future__ import annotations

import typer

from .. import __version__
from . import catalog, check, compare, judge, leaderboard, score, store, sweep, train, ui

app = typer.Typer(
    name="safeeval",
    help="Did fine-tuning make this model less safe? Score safety benchmarks with judged, reproducible results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also show the libraries' own log lines and progress bars (vLLM, transformers, datasets).",
    ),
):
    ui.VERBOSE = verbose
    if version:
        ui.out_console.print(f"safeeval {__version__}", highlight=False)
        raise typer.Exit()


app.command("score", help=score.HELP)(score.score)
app.command(
    "tasks", help="List the benchmarks: name, splits, rows, source and licence, and whether a local copy is found."
)(catalog.tasks)
app.command("judges", help="List the judges and the refusal-marker lists the keyword judge can use.")(catalog.judges)
app.add_typer(judge.app, name="judge")
app.command("check", help=check.HELP)(check.check)
app.command("leaderboard", help=leaderboard.HELP)(leaderboard.leaderboard)
app.command("compare", help=compare.HELP)(compare.compare)
train.register(app)
app.command("sweep", help=sweep.HELP)(sweep.sweep)
app.add_typer(store.app, name="store")
