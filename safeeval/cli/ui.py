"""How the command line talks to people: consoles, progress, tables and the one error handler.

Progress is rich's bar on a terminal; in a log (CI, a file, a pipe) it is a plain line at a steady interval, so
logs stay readable and grep-able. Tables never wrap a name; where a table cannot fit it becomes one line per row.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import SafeevalError

console = Console(stderr=True)  # progress, notes and errors
out_console = Console()  # results: what a pipe or a file receives
VERBOSE = False  # --verbose: the libraries' own log lines and progress bars too
LOG_INTERVAL = float(os.environ.get("SAFEEVAL_LOG_INTERVAL", "10"))  # seconds between progress lines in a log


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """User mistakes end in one red sentence and exit code 2; Ctrl-C keeps what was saved."""
    try:
        yield
    except SafeevalError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # an output file or folder we cannot write or read: say which, not a traceback
        where = f" {exc.filename}" if exc.filename else ""
        console.print(
            f"[red]error:[/red] cannot use{escape(where)}: {escape(str(exc.strerror or exc))}.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print(
            "[yellow]Interrupted.[/yellow] Everything generated so far is saved in the store; "
            "run the same command again to resume.",
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


def say(text: str) -> None:
    """A note to the person running the command (stderr)."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def note(text: str) -> None:
    console.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def stage(description: str, total: int):
    """The library's Reporter: a progress bar on a terminal, a line every LOG_INTERVAL seconds in a log."""
    if total == 0:
        yield lambda n: None
        return
    if console.is_terminal:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)
        return
    with _log_progress(description, total) as advance:
        yield advance


@contextlib.contextmanager
def _log_progress(description: str, total: int):
    started = last = time.monotonic()
    done = 0

    def line() -> None:
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else None
        print(
            f"{description}: {done}/{total} ({100 * done / total:.0f}%), elapsed {_clock(elapsed)}, "
            f"eta {_clock(eta) if eta is not None else '?'}",
            file=sys.stderr,
            flush=True,
        )

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last >= LOG_INTERVAL and done < total:
            last = time.monotonic()
            line()

    yield advance
    line()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def table(
    title: str | None,
    columns: list[tuple[str, str]],
    rows: list[list[str]],
    fmt: str = "table",
    caption: str | None = None,
) -> None:
    """Rows as a rich table (on a terminal, when it fits), else TSV: one grep-able line per row.
    columns: (header, "left" | "right"). The first column names a row and never wraps."""
    if fmt == "json":
        import json

        keys = [h.replace("\n", " ") for h, _ in columns]
        out_console.print_json(json.dumps([dict(zip(keys, r)) for r in rows]))
        return
    needed = sum(max(len(h), *(len(r[i]) for r in rows)) + 2 for i, (h, _) in enumerate(columns)) if rows else 0
    if fmt == "tsv" or (fmt == "auto" and (not out_console.is_terminal or needed > out_console.width)):
        for line in (title, caption):  # to stderr: a log shows them, a pipe receives clean TSV
            if line:
                say(line)
        print("\t".join(h.replace("\n", " ") for h, _ in columns))
        for r in rows:
            print("\t".join(c.replace("\t", " ").replace("\n", " ") for c in r))
        return
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, caption=caption)
    for i, (header, justify) in enumerate(columns):
        numeric = justify == "right" or i == 0
        t.add_column(
            header,
            justify=justify,
            no_wrap=numeric,
            overflow="fold",
            min_width=max(len(x) for x in header.split("\n")) if numeric else None,
        )
    for r in rows:
        t.add_row(*(escape(c) for c in r))
    out_console.print(t)


FORMATS = ("table", "json", "tsv")


def listing_format(given: str | None) -> str:
    """--format for listings: as given, else a table on a terminal and TSV in a pipe (names never wrap there)."""
    if given is None:
        return "auto"
    if given not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    return given
