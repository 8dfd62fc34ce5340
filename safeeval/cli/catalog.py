"""`safeeval tasks` and `safeeval judges`: what can be scored, and by what. Names never wrap; in a pipe the
listing is TSV (or choose with --format), so `safeeval tasks | grep directharm4` finds the row."""

from __future__ import annotations

from pathlib import Path

import typer

from ..registry import load_judges, load_suites, load_tasks, marker_lists
from . import ui

FORMAT_HELP = "table, json or tsv \\[default: table on a terminal, tsv in a pipe]."


def tasks(
    tasks_dir: list[Path] = typer.Option([], "--tasks-dir", help="Extra folder of task YAML specs (repeatable)."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of local benchmark copies to look in."
    ),
    fmt: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
):
    with ui.errors():
        specs, suites = load_tasks(tasks_dir), load_suites(tasks_dir)
    rows = []
    for name, spec in sorted(specs.items()):
        count = spec.rows if not isinstance(spec.rows, dict) else ", ".join(f"{k} {v}" for k, v in spec.rows.items())
        source = spec.hub["dataset"] if spec.hub and spec.hub.get("dataset") != "csv" else (spec.url or "inline")
        splits = ", ".join(spec.splits or []) + (f" (default {spec.default_split})" if spec.default_split else "")
        rows.append([name, splits or "-", str(count or "?"), source, spec.license or "?", _local_copy(spec, data_dir)])
    rows.append(
        ["lmeval:TASK", "-", "-", "any generative lm-evaluation-harness task (lmeval:TASK:5shot)", "the task's", "-"]
    )
    for name, suite in sorted(suites.items()):
        rows.append(
            [f"suite:{name}", "-", "-", f"mean {suite.data['metric']} over {', '.join(suite.data['tasks'])}", "-", "-"]
        )
    columns = [
        ("name", "left"),
        ("splits", "left"),
        ("rows", "left"),
        ("source", "left"),
        ("licence", "left"),
        ("local copy", "left"),
    ]
    ui.table("safeeval tasks", columns, rows, ui.listing_format(fmt))


def _local_copy(spec, data_dir: Path | None) -> str:
    if spec.inline:
        return "built in"
    if not spec.local or data_dir is None:
        return "-"
    pattern = spec.local["path"].format(split=spec.default_split or "")
    return "found" if any(data_dir.glob(pattern)) else f"missing ({pattern})"


def judges(
    judges_dir: list[Path] = typer.Option([], "--judges-dir", help="Extra folder of judge YAML specs (repeatable)."),
    fmt: str | None = typer.Option(None, "--format", help=FORMAT_HELP),
):
    with ui.errors():
        specs, lists = load_judges(judges_dir), marker_lists(judges_dir)
    fmt = ui.listing_format(fmt)
    rows = []
    for name, spec in sorted(specs.items()):
        variants = spec.data.get("variants") or ({"any marker list below": 1} if spec.data["kind"] == "keyword" else {})
        rows.append([name, spec.data["kind"], str(spec.data.get("model") or "-"), ", ".join(map(str, variants)) or "-"])
    ui.table(
        "safeeval judges",
        [("name", "left"), ("kind", "left"), ("default model", "left"), ("variants (name:variant)", "left")],
        rows,
        fmt,
    )
    rows = [
        [name, str(len(spec["markers"])), spec.get("source", ""), spec.get("license", "")]
        for name, spec in lists.items()
    ]
    ui.table(
        "refusal-marker lists (keyword:NAME)",
        [("list", "left"), ("markers", "right"), ("source", "left"), ("licence", "left")],
        rows,
        fmt,
    )
