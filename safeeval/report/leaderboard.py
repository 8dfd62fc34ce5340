"""Leaderboards over finished runs: one row per run (or per group of runs across seeds), one column per metric.

Pure functions. `build()` turns runs into a `Leaderboard` (columns, rows, cells that keep every number);
`render_*` turn that into a rich table, Markdown, CSV or JSON. Nothing here reads files or calls a model.

Cells keep results.json's numbers as they are (fractions: value, ci_low, ci_high, n); the text renderings show
percentages. Grouped rows carry the mean, the sample standard deviation over seeds and the number of seeds.
A delta is candidate minus baseline, in the metric's own unit: a positive Δ ASR is safety lost, a positive
Δ accuracy is utility gained. With a baseline, the deltas of ASR, benign refusal and accuracy are tested (paired
by prompt id, seeds as strata, Holm over the rows of each column: report/compare.py) and a significant one is
marked `*`.

Beside the scores: each judge's card (its validations against human labels, or `unvalidated`) in a legend
under the table and per row in CSV and JSON; and contamination: a cell whose task's scored prompts the model
was trained on is marked `‡`, with the counts under the table (and per row in CSV and JSON). A trained run
whose results predate the check says "not checked".
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field

from ..cards import card_line, card_of
from ..errors import SafeevalError
from ..results import Rate
from .compare import MARK, significance
from .runs import Run, resolve_baseline

KEYS = ("model", "trained_on", "method", "scenario", "seed")  # what a row is, and what --filter and --group-by name
GROUP_KEYS = ("model", "trained_on", "method", "scenario")

# Metric key in a results.json block -> its name on the leaderboard. Any other rate-shaped block (a scorer's
# extras, e.g. exact_match_strict) keeps its key as its name.
NAMES = {
    "asr": "ASR",
    "asr_without_shells": "ASR without shells",
    "asr_corrected": "ASR corrected",
    "asr_coherent": "ASR coherent",
    "harmful_score": "harmful score",
    "mean_score": "mean score",
    "benign_refusal_rate": "benign refusal",
    "degenerate_share": "degenerate",
    "shell_share": "shells",
    "accuracy": "accuracy",
}
DEFAULT_METRICS = ("ASR", "ASR without shells", "benign refusal", "ASR corrected", "degenerate", "shells", "accuracy")
CONTAMINATED = "‡"  # a cell whose task's scored prompts the model was trained on
_NOT_METRICS = {
    "n",
    "no_answer",
    "not_scored",
    "n_harmful",
    "n_judged",
    "not_judged",
    "unparsed",
    "n_benign",
    "problems",
    "samples_per_problem",
}
_RAW_SCALE = {"mean_score"}  # a 1-5 rubric score, not a rate


@dataclass(frozen=True)
class Column:
    name: str  # "advbench/keyword ASR", "gsm8k accuracy"
    task: str
    evaluator: str  # the judge (safety) or scorer (utility)
    key: str  # the block's key in results.json: asr, benign_refusal_rate, accuracy, ...
    metric: str  # the leaderboard's name for it: ASR, benign refusal, accuracy, ...
    kind: str  # safety | utility

    @property
    def percent(self) -> bool:
        return self.key not in _RAW_SCALE

    @property
    def delta_name(self) -> str:
        return self.name[: len(self.name) - len(self.metric)] + "Δ " + self.metric


@dataclass
class Cell:
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    std: float | None = None  # grouped rows: sample std over seeds
    seeds: int | None = None  # grouped rows: how many seeds had this metric
    values: list[float] | None = None  # grouped rows: each seed's value

    def as_dict(self) -> dict:
        if self.seeds is not None:
            return {"mean": self.value, "std": self.std, "n_seeds": self.seeds, "values": self.values}
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


@dataclass
class Row:
    label: str
    keys: dict  # model, method, scenario, seed (a grouped row: only the grouped-by ones)
    cells: dict[str, Cell]
    runs: list[str]  # the labels of the runs behind this row
    deltas: dict[str, float | None] = field(default_factory=dict)
    is_baseline: bool = False
    significant: dict[str, dict] = field(default_factory=dict)  # column -> the paired test of its delta
    cards: dict[str, list[dict]] = field(default_factory=dict)  # judge -> its distinct cards over the row's runs
    contamination: dict = field(default_factory=dict)  # task -> contaminated, scored, by_role (summed over runs)
    unchecked: int = 0  # trained runs of the row whose results predate the contamination check
    members: list[Run] = field(default_factory=list, repr=False)  # the runs behind it


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row]
    group_by: list[str] = field(default_factory=list)
    baseline: str | None = None  # the baseline row's label
    notes: list[str] = field(default_factory=list)  # what the significance tests could not test

    @property
    def grouped(self) -> bool:
        return bool(self.group_by)

    @property
    def key_names(self) -> list[str]:
        return list(self.group_by) if self.grouped else list(KEYS)

    def sort_columns(self) -> list[str]:
        names = ["run", *self.key_names] + (["seeds"] if self.grouped else [])
        names += [c.name for c in self.columns]
        if self.baseline is not None:
            names += [c.delta_name for c in self.columns]
        return names


# ---- building ----------------------------------------------------------------------------------------------


def parse_filters(items: list[str]) -> dict[str, set[str]]:
    """['method=lora', 'seed=0', 'method=full'] -> {'method': {'lora', 'full'}, 'seed': {'0'}}; a key
    given twice matches either value, different keys must all match."""
    out: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise SafeevalError(
                f"--filter '{item}' is not KEY=VALUE; KEY is one of {', '.join(KEYS)}, e.g. method=lora."
            )
        if key not in KEYS:
            raise SafeevalError(f"--filter '{item}': unknown key '{key}'; filter on {', '.join(KEYS)}.")
        out.setdefault(key, set()).add(value)
    return out


def _keys(run: Run) -> dict:
    return {
        "model": run.model,
        "trained_on": run.trained_on,
        "method": run.method,
        "scenario": run.scenario,
        "seed": run.seed,
    }


def matches(run: Run, filters: dict[str, set[str]]) -> bool:
    keys = _keys(run)
    return all(str(keys[k]) in values for k, values in filters.items())


def discover_columns(runs: list[Run]) -> list[Column]:
    """Every metric any run has, in first-seen order: safety per task and judge, utility per task."""
    seen: dict[str, Column] = {}
    for run in runs:
        for (task, evaluator), block in run.metrics().items():
            kind = "safety" if "asr" in block else "utility" if "accuracy" in block else None
            if kind is None or not isinstance(block, dict):
                continue
            for key, value in block.items():
                if key in _NOT_METRICS or not _is_metric(value):
                    continue
                metric = NAMES.get(key, key)
                # A utility task has one scorer, so its columns are named by the task alone.
                name = f"{task}/{evaluator} {metric}" if kind == "safety" else f"{task} {metric}"
                if name not in seen:
                    seen[name] = Column(name, task, evaluator, key, metric, kind)
    # Per task and evaluator, in NAMES' order (the ASR beside the ASR without shells, degenerate beside shells),
    # then the evaluator's own metrics as found.
    groups = list(dict.fromkeys((c.task, c.evaluator) for c in seen.values()))
    order = list(NAMES)
    return sorted(
        seen.values(),
        key=lambda c: (groups.index((c.task, c.evaluator)), order.index(c.key) if c.key in order else len(order)),
    )


def _is_metric(value) -> bool:
    if isinstance(value, dict):
        return "value" in value
    return isinstance(value, float)


def _cell(block: dict, key: str) -> Cell | None:
    value = block.get(key)
    if (rate := Rate.of(value)) is not None:
        return None if rate.value is None else Cell(float(rate.value), rate.ci_low, rate.ci_high, rate.n)
    if isinstance(value, float):
        return Cell(value)
    return None


def select_columns(
    columns: list[Column], tasks: list[str] | None = None, metrics: list[str] | None = None
) -> list[Column]:
    """--tasks: task or task/judge names; --metrics: metric names (ASR, accuracy, exact_match_strict...), or 'all'.
    Without --metrics: ASR, benign refusal, ASR corrected and accuracy."""
    if tasks:
        known = sorted({c.task for c in columns} | {f"{c.task}/{c.evaluator}" for c in columns if c.kind == "safety"})
        lowered = {t.lower() for t in known}
        bad = [t for t in tasks if t.lower() not in lowered]
        if bad:
            raise SafeevalError(f"--tasks: no run has {', '.join(bad)}; these do: {', '.join(known) or 'none'}.")
        wanted = {t.lower() for t in tasks}
        columns = [c for c in columns if c.task.lower() in wanted or f"{c.task}/{c.evaluator}".lower() in wanted]
    if metrics and [m.lower() for m in metrics] != ["all"]:
        known = list(dict.fromkeys(c.metric for c in columns))
        lowered = {m.lower() for m in known}
        bad = [m for m in metrics if m.lower() not in lowered]
        if bad:
            raise SafeevalError(
                f"--metrics: no column measures {', '.join(bad)}; choose from {', '.join(known) or 'none'} (or all)."
            )
        wanted = {m.lower() for m in metrics}
        columns = [c for c in columns if c.metric.lower() in wanted]
    elif not metrics:
        columns = [c for c in columns if c.metric in DEFAULT_METRICS]
    return columns


def _dedupe(runs: list[Run]) -> list[Run]:
    """A run passed as a folder and also found in --store is one row."""
    seen, out = set(), []
    for run in runs:
        where = run.path.resolve() if run.path is not None else None
        if where is not None and where in seen:
            continue
        if where is not None:
            seen.add(where)
        out.append(run)
    return out


def single_baseline(runs: list[Run], baseline: str | None) -> Run | None:
    """The one run a report compares against, or None when --baseline names none or several (a group)."""
    found = resolve_baseline(runs, baseline) if baseline else []
    return found[0] if len(found) == 1 else None


def build(
    runs: list[Run],
    *,
    group_by: list[str] | None = None,
    baseline: str | None = None,
    filters: dict[str, set[str]] | None = None,
    tasks: list[str] | None = None,
    metrics: list[str] | None = None,
    sort: str | None = None,
    desc: bool = False,
) -> Leaderboard:
    if not runs:
        raise SafeevalError("No runs given: pass run folders, or --store with runs recorded in it.")
    runs = _dedupe(runs)
    group_by = [g.strip().lower() for g in group_by or [] if g.strip()]
    bad = [g for g in group_by if g not in GROUP_KEYS]
    if bad:
        raise SafeevalError(
            f"--group-by {', '.join(bad)}: group by {', '.join(GROUP_KEYS)} (comma-separated); "
            "seeds are what a group averages over."
        )
    base_runs = resolve_baseline(runs, baseline) if baseline else []
    shown = [r for r in runs if matches(r, filters or {})]
    if not shown:
        wanted = "; ".join(f"{k}={'|'.join(sorted(v))}" for k, v in (filters or {}).items())
        raise SafeevalError(f"No run matches --filter {wanted}; of {len(runs)} runs, e.g. {runs[0].label}.")
    columns = select_columns(discover_columns(shown + base_runs), tasks, metrics)
    if not columns:
        raise SafeevalError(
            "The runs have no metrics to show" + (" for these --tasks/--metrics." if tasks or metrics else ".")
        )

    rows = _group_rows(shown, columns, group_by) if group_by else [_run_row(r, columns) for r in shown]
    base_row = _baseline_row(runs, base_runs, columns, group_by, baseline) if base_runs else None
    board = Leaderboard(columns, rows, group_by, base_row.label if base_row is not None else None)
    if base_row is not None:
        for row in rows:
            row.is_baseline = row.label == base_row.label
            for col in columns:
                mine, theirs = row.cells.get(col.name), base_row.cells.get(col.name)
                row.deltas[col.name] = None if mine is None or theirs is None else mine.value - theirs.value
        _test_deltas(board, base_row)
    if sort:
        sort_rows(board, sort, desc)
    return board


def _baseline_row(
    runs: list[Run], base_runs: list[Run], columns: list[Column], group_by: list[str], baseline: str | None
) -> Row:
    """The row the deltas are taken against: the baseline's whole group (grouped), else its one run."""
    if group_by:
        base_keys = {tuple(_keys(r)[g] for g in group_by) for r in base_runs}
        if len(base_keys) > 1:
            raise SafeevalError(
                f"--baseline '{baseline}' matches runs in {len(base_keys)} groups "
                f"({', '.join(' · '.join(map(str, k)) for k in sorted(base_keys))}); name one run."
            )
        members = [r for r in runs if tuple(_keys(r)[g] for g in group_by) in base_keys] or base_runs
        return _group_rows(members, columns, group_by)[0]
    if len(base_runs) > 1:
        raise SafeevalError(
            f"--baseline '{baseline}' matches {len(base_runs)} runs ("
            + ", ".join(r.label for r in base_runs[:5])
            + (", ..." if len(base_runs) > 5 else "")
            + "); give more of the label, or a run folder."
        )
    return _run_row(base_runs[0], columns)


def _run_row(run: Run, columns: list[Column]) -> Row:
    blocks = run.metrics()
    cells = {}
    for col in columns:
        block = blocks.get((col.task, col.evaluator))
        cell = _cell(block, col.key) if block else None
        if cell is not None:
            cells[col.name] = cell
    return _annotate(Row(run.label, _keys(run), cells, [run.label]), [run], columns)


def _annotate(row: Row, members: list[Run], columns: list[Column]) -> Row:
    """The judges' cards and the contamination counts of the runs behind a row."""
    row.members = members
    for judge in dict.fromkeys(c.evaluator for c in columns if c.kind == "safety"):
        cards = row.cards.setdefault(judge, [])
        for run in members:
            if (card := card_of(run.result.judges.get(judge))) not in cards:
                cards.append(card)
    for run in members:
        block = run.result.contamination
        if not block or block.get("status") != "checked":
            row.unchecked += run.result.training is not None  # a model scored as it is has no lineage to check
            continue
        for task, found in (block.get("tasks") or {}).items():
            into = row.contamination.setdefault(task, {"contaminated": 0, "scored": 0, "by_role": {}})
            into["contaminated"] += found.get("contaminated", 0)
            into["scored"] += found.get("scored", 0)
            for role, n in (found.get("by_role") or {}).items():
                into["by_role"][role] = into["by_role"].get(role, 0) + n
    return row


def _test_deltas(board: Leaderboard, base_row: Row) -> None:
    """Mark each row's tested deltas (ASR, benign refusal, accuracy) with their paired test against the baseline
    row's runs: one family per column, Holm over the rows."""
    groups = {row.label: row.members for row in board.rows if not row.is_baseline}
    if not groups:
        return
    columns = {(c.task, c.evaluator, c.key): c.name for c in board.columns}
    found, board.notes = significance(base_row.members, groups, list(columns))
    for row in board.rows:
        for column, name in columns.items():
            diff = found.get((row.label, column))
            if diff is not None:
                row.significant[name] = {
                    "significant": diff.significant,
                    "p_holm": diff.p_holm,
                    "difference": diff.difference,
                    "ci_low": diff.ci_low,
                    "ci_high": diff.ci_high,
                    "n_pairs": diff.n_pairs,
                }


def _group_rows(runs: list[Run], columns: list[Column], group_by: list[str]) -> list[Row]:
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(_keys(run)[g] for g in group_by), []).append(run)
    rows = []
    for key, members in groups.items():
        per_run = [_run_row(r, columns) for r in members]
        cells = {}
        for col in columns:
            values = [r.cells[col.name].value for r in per_run if col.name in r.cells]
            if values:
                mean = math.fsum(values) / len(values)
                std = (
                    math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
                    if len(values) > 1
                    else None
                )
                cells[col.name] = Cell(mean, std=std, seeds=len(values), values=values)
        label = " · ".join(str(k) for k in key)
        rows.append(
            _annotate(Row(label, dict(zip(group_by, key)), cells, [r.label for r in per_run]), members, columns)
        )
    return rows


def sort_rows(board: Leaderboard, column: str, desc: bool = False) -> None:
    """Sort in place by a key, a metric or a delta column (case-insensitive); rows without a value go last."""
    names = board.sort_columns()
    match = next((n for n in names if n.lower() == column.strip().lower()), None)
    if match is None:
        raise SafeevalError(f"--sort '{column}' is not a column; sort by one of: {', '.join(names)}.")
    deltas = {c.delta_name: c.name for c in board.columns}

    def value(row: Row):
        if match == "run":
            return row.label
        if match == "seeds":
            return len(row.runs)
        if match in row.keys:
            return row.keys[match]
        if match in deltas:
            return row.deltas.get(deltas[match])
        cell = row.cells.get(match)
        return cell.value if cell else None

    present = [r for r in board.rows if value(r) is not None]
    missing = [r for r in board.rows if value(r) is None]
    present.sort(key=value, reverse=desc)  # stable: ties keep their order
    board.rows = present + missing


# ---- rendering ---------------------------------------------------------------------------------------------


def _num(x: float | None, col: Column, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.{digits}f}" if col.percent else f"{x:.2f}"


def cell_text(cell: Cell | None, col: Column) -> str:
    """'12.5 [8.1, 17.0]' (percent, 95% CI); grouped: '12.5 ± 2.1 (3)' (mean ± sample std, n seeds)."""
    if cell is None or cell.value is None:
        return "-"
    if cell.seeds is not None:
        spread = f" ± {_num(cell.std, col)}" if cell.std is not None else ""
        return f"{_num(cell.value, col)}{spread} ({cell.seeds})"
    if cell.ci_low is None or cell.ci_high is None:
        return _num(cell.value, col)
    return f"{_num(cell.value, col)} [{_num(cell.ci_low, col)}, {_num(cell.ci_high, col)}]"


def delta_text(delta: float | None, col: Column) -> str:
    if delta is None:
        return "-"
    return f"{'+' if delta >= 0 else '-'}{_num(abs(delta), col)}"


def table_cells(board: Leaderboard) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Headers (as two lines: task/judge over metric) and text cells as the terminal and Markdown show them:
    the run, then each metric and, with a baseline, its delta."""
    headers = [("", "group" if board.grouped else "run")] + ([("", "seeds")] if board.grouped else [])
    for col in board.columns:
        prefix = col.name[: len(col.name) - len(col.metric)].strip()
        headers.append((prefix, col.metric + (" %" if col.percent else "")))
        if board.baseline is not None:
            headers.append((prefix, "Δ " + col.metric + (" pp" if col.percent else "")))
    rows = []
    for row in board.rows:
        out = [row.label + (" (baseline)" if row.is_baseline else "")] + ([str(len(row.runs))] if board.grouped else [])
        for col in board.columns:
            text = cell_text(row.cells.get(col.name), col)
            out.append(text + (f" {CONTAMINATED}" if text != "-" and _contaminated(row, col.task) else ""))
            if board.baseline is not None:
                text = delta_text(row.deltas.get(col.name), col)
                out.append(text + (f" {MARK}" if row.significant.get(col.name, {}).get("significant") else ""))
        rows.append(out)
    return headers, rows


def _contaminated(row: Row, task: str) -> int:
    return (row.contamination.get(task) or {}).get("contaminated", 0)


def caption(board: Leaderboard) -> str:
    parts = ["mean ± sample std over seeds (n seeds)" if board.grouped else "% with 95% CI"]
    if board.baseline is not None:
        parts.append(
            f"Δ = row − baseline ({board.baseline}), percentage points; Δ ASR > 0 is safety lost, "
            "Δ accuracy > 0 is utility gained"
        )
        untested = (
            f"{len(board.notes)} comparison{'s' if len(board.notes) > 1 else ''} untested, e.g. {board.notes[0]}"
            if board.notes
            else ""
        )
        if any(r.significant for r in board.rows):
            parts.append(
                f"{MARK} Δ significant at Holm-adjusted p < 0.05 (ASR, benign refusal, accuracy: paired by "
                "prompt id, seeds combined by stratified CMH, Holm over the rows of each column; "
                "`safeeval compare` gives intervals and p-values)" + (f"; {untested}" if untested else "")
            )
        else:
            parts.append("Δ not tested for significance" + (f": {untested}" if untested else ": no tested metric"))
    return "; ".join(parts)


def legend(board: Leaderboard) -> list[str]:
    """The lines under a table: each judge's card, then contamination (never left unsaid)."""
    lines = []
    judges: dict[str, dict[str, int]] = {}
    for row in board.rows:
        for judge, cards in row.cards.items():
            for card in cards:
                line = card_line(card)
                judges.setdefault(judge, {})[line] = judges.setdefault(judge, {}).get(line, 0) + 1
    for judge, lines_of in judges.items():
        several = len(lines_of) > 1
        lines.append(
            f"judge {judge}: "
            + "; or ".join(f"{line}" + (f" ({n} rows)" if several else "") for line, n in lines_of.items())
        )
    hit = [r for r in board.rows if any(v["contaminated"] for v in r.contamination.values())]
    checked = [r for r in board.rows if r.contamination]
    for row in hit:
        counts = ", ".join(
            f"{task} {v['contaminated']} of {v['scored']} ("
            + ", ".join(f"{role} {n}" for role, n in v["by_role"].items())
            + ")"
            for task, v in row.contamination.items()
            if v["contaminated"]
        )
        lines.append(
            f"{CONTAMINATED} {row.label}: scored prompts in its training data (exact, or near-duplicate "
            f"by character 3-gram Jaccard): {counts}"
        )
    if checked and not hit:
        lines.append(f"contamination: none of the {len(checked)} checked rows was trained on a scored prompt")
    unchecked = [r.label for r in board.rows if r.unchecked]
    if unchecked:
        lines.append(
            f"contamination not checked in {len(unchecked)} rows (results written before the check, or its "
            "data was not at hand): " + ", ".join(unchecked[:3]) + (", ..." if len(unchecked) > 3 else "")
        )
    return lines


def render_rich(board: Leaderboard, width: int = 80) -> list:
    """rich Tables that each fit `width`, then a caption: when the metrics do not fit side by side, they are
    split over several tables, each repeating the run column. Numbers are never cut; run labels fold."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    headers, rows = table_cells(board)
    fixed = 1 + int(board.grouped)  # run (and seeds) repeat in every part
    per_metric = 2 if board.baseline is not None else 1

    def header_lines(h: tuple[str, str]) -> list[str]:
        return [line for line in h if line]

    def col_width(k: int) -> int:
        return max([len(r[k]) for r in rows] + [len(line) for line in header_lines(headers[k])])

    sep, edge = 2, 2  # rich's SIMPLE_HEAD box: a divider and padding between columns, a margin at the edges
    label_full = max([len(r[0]) for r in rows] + [len(headers[0][1])])
    label_min = min(label_full, 24)
    seeds_width = (col_width(1) + sep) if board.grouped else 0
    metric_groups = [
        list(range(fixed + i * per_metric, fixed + (i + 1) * per_metric)) for i in range(len(board.columns))
    ]
    parts: list[list[int]] = [[]]
    used = edge + label_min + seeds_width
    for group in metric_groups:
        need = sum(col_width(k) + sep for k in group)
        if parts[-1] and used + need > width:
            parts.append([])
            used = edge + label_min + seeds_width
        parts[-1].extend(group)
        used += need
    out: list = []
    for i, part in enumerate(parts):
        title = "leaderboard" + (f" ({i + 1}/{len(parts)})" if len(parts) > 1 else "")
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        room = width - edge - seeds_width - sum(col_width(k) + sep for k in part)
        table.add_column(headers[0][1], overflow="fold", width=max(label_min, min(label_full, room)))
        if board.grouped:
            table.add_column(headers[1][1], justify="right", no_wrap=True)
        for k in part:
            table.add_column(
                Text("\n".join(header_lines(headers[k]))), justify="right", no_wrap=True, width=col_width(k)
            )
        for row in rows:  # Text, not markup: a model named "[bold]" is shown as it is
            table.add_row(*map(Text, row[:fixed]), *(Text(row[k]) for k in part))
        out.append(table)
    out.append(Text(caption(board), style="dim"))
    out += [Text(line) for line in legend(board)]
    return out


def render_text(board: Leaderboard, width: int = 80) -> str:
    """The terminal tables as plain text (for --output with the default format)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    for part in render_rich(board, width):
        console.print(part)
    return console.file.getvalue()


def render_markdown(board: Leaderboard) -> str:
    headers, rows = table_cells(board)

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("*", "\\*")

    lines = [
        "| " + " | ".join(esc(" ".join(x for x in h if x)) for h in headers) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    notes = "".join(f"- {esc(line)}\n" for line in legend(board))
    return "\n".join(lines) + f"\n\n{esc(caption(board))}\n" + (f"\n{notes}" if notes else "")


def render_csv(board: Leaderboard) -> str:
    """One row per run (or group); numbers as fractions, as in results.json, unrounded. Per metric: the value
    and its _ci_low/_ci_high (grouped: the mean, _std and _n_seeds); with a baseline, its Δ column and the Holm-
    adjusted p of its paired test (_p_holm; empty where untested). Then each judge's card and the contamination
    counts ("task contaminated/scored; ...", "not checked", or empty for a model scored as it is)."""
    judges = list(dict.fromkeys(j for row in board.rows for j in row.cards))
    header = ["label", *board.key_names] + (["seeds"] if board.grouped else [])
    for col in board.columns:
        header += (
            [col.name, f"{col.name}_std", f"{col.name}_n_seeds"]
            if board.grouped
            else [col.name, f"{col.name}_ci_low", f"{col.name}_ci_high"]
        )
        if board.baseline is not None:
            header += [col.delta_name, f"{col.delta_name}_p_holm"]
    header += [f"judge card: {j}" for j in judges] + ["contamination"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    blank = ""
    for row in board.rows:
        out = [row.label, *(row.keys.get(k, blank) for k in board.key_names)] + (
            [len(row.runs)] if board.grouped else []
        )
        for col in board.columns:
            c = row.cells.get(col.name)
            if board.grouped:
                out += [blank, blank, blank] if c is None else [c.value, _or(c.std), c.seeds]
            else:
                out += [blank, blank, blank] if c is None else [c.value, _or(c.ci_low), _or(c.ci_high)]
            if board.baseline is not None:
                out += [_or(row.deltas.get(col.name)), _or(row.significant.get(col.name, {}).get("p_holm"))]
        out += [" | ".join(card_line(c) for c in row.cards.get(j, [])) for j in judges]
        out.append(_contamination_text(row))
        writer.writerow([repr(v) if isinstance(v, float) else v for v in out])
    return buf.getvalue()


def _contamination_text(row: Row) -> str:
    found = "; ".join(f"{task} {v['contaminated']}/{v['scored']}" for task, v in row.contamination.items())
    unchecked = f"not checked ({row.unchecked} runs)" if row.unchecked else ""
    return "; ".join(x for x in (found, unchecked) if x)


def _or(x):
    return "" if x is None else x


def to_dict(board: Leaderboard) -> dict:
    return {
        "grouped_by": board.group_by or None,
        "baseline": board.baseline,
        "units": "fractions as in results.json; grouped cells: mean, sample std over seeds, n_seeds",
        "columns": [
            {
                "name": c.name,
                "task": c.task,
                "evaluator": c.evaluator,
                "metric": c.metric,
                "key": c.key,
                "kind": c.kind,
                **({"delta": c.delta_name} if board.baseline is not None else {}),
            }
            for c in board.columns
        ],
        "rows": [
            {
                "label": r.label,
                **r.keys,
                "runs": r.runs,
                "is_baseline": r.is_baseline,
                "cells": {c.name: (r.cells[c.name].as_dict() if c.name in r.cells else None) for c in board.columns},
                **(
                    {
                        "deltas": {c.name: r.deltas.get(c.name) for c in board.columns},
                        "significance": {c.name: r.significant.get(c.name) for c in board.columns},
                    }
                    if board.baseline is not None
                    else {}
                ),
                "judge_cards": r.cards,
                "contamination": r.contamination or None,
                "contamination_not_checked": r.unchecked,
            }
            for r in board.rows
        ],
        "legend": legend(board),
        **({"significance_notes": board.notes} if board.baseline is not None else {}),
    }


def render_json(board: Leaderboard) -> str:
    return json.dumps(to_dict(board), indent=2, ensure_ascii=False) + "\n"


FORMATS = ("table", "markdown", "csv", "json")


def render(board: Leaderboard, fmt: str, width: int = 80) -> str:
    if fmt == "table":
        return render_text(board, width)
    if fmt == "markdown":
        return render_markdown(board)
    if fmt == "csv":
        return render_csv(board)
    if fmt == "json":
        return render_json(board)
    raise SafeevalError(f"--format {fmt}: choose one of {', '.join(FORMATS)}.")
