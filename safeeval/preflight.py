"""A sweep checked before any step runs: input that asks for more than exists, and cells that would be scored on
prompts they were trained on. `check` is called by `sweep.load_sweep`; every failure is one sentence.

Bad input: a grid axis, the reference list, score.tasks or score.judges naming a value twice (a cell would run
twice under one name); two cells with one run folder; score.limit above a scored benchmark's number of prompts.

Contamination: each training cell's data (its task set, its poison in the poisoned scenario, its safety set when
its method reads one, and the sets of the alignment run its base model comes from) against the prompts it will
be scored on (run.prepare with the sweep's score settings: the same subset every step scores), by the guard's
method (safeeval.contamination: exact after normalisation, or character 3-gram Jaccard >= 0.65). Whole sets are
checked, not only the rows a seed will draw: another seed or budget draws others. A sweep with any contaminated
cell stops unless its file says `allow_contamination: true`; each run's results.json counts what it trained on
either way (train/evaluate.py). Two sets are only known during training and are checked there, in results.json:
GR-SAP's synthetic safety rows (written by the aligned model) and a generated set's answers. A generated set
(`generate:` in its spec, as the default poison hh-harmful) is checked by the requests it will answer
(poison.select_requests over its source); those matching an evaluated safety or benign benchmark are dropped
when it is built (poison.py), so only its matches with utility tasks count here.

Speed: each distinct set and each scored task is read once for the whole grid, and one `find` compares them
(about 3k x 10k texts in 5 s). The verdict of a passing check is cached under $SAFEEVAL_HOME/preflight, keyed by
the sweep's settings and the size and time of every file under the data and spec folders, so a sweep's step
processes (which load the sweep again) do not repeat it.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from . import __version__
from . import data as task_data
from .config import ScoreConfig
from .contamination import find
from .errors import SafeevalError
from .files import home, write_json
from .keys import digest
from .registry import name_list

ALLOW = "allow_contamination"


def check(path: Path, spec: dict, steps: list) -> None:
    """Raise SafeevalError (one sentence) when the sweep asks for more than exists, or trains a cell on prompts it
    is scored on without `allow_contamination: true`. steps: sweep.Step objects (name, kind, train, tasks), checked
    for duplicates already (duplicates(), before they are linked into a graph)."""
    if spec.get(ALLOW) not in (None, True, False):
        raise SafeevalError(f"Sweep {path}: {ALLOW} must be true or false, not {spec.get(ALLOW)!r}.")
    stamps = _stamps(spec, steps)
    cache = home() / "preflight" / f"{_key(spec, steps, stamps)}.json"
    if cache.exists():  # this sweep, on these files, passed before (a step's process loads the sweep again)
        return
    scored, kinds = _scored(path, spec, steps)
    found = [] if spec.get(ALLOW) else _contaminated(steps, scored, kinds, digest(stamps, length=24))
    if found:
        listed = "; ".join(found[:3]) + (f"; and {len(found) - 3} more cells" if len(found) > 3 else "")
        raise SafeevalError(
            f"Sweep {path}: {len(found)} cell{'s' if len(found) > 1 else ''} would be scored on "
            f"prompts {'they were' if len(found) > 1 else 'it was'} trained on ({listed}); train on "
            f"other data, or set `{ALLOW}: true` in the sweep file to run them anyway (each run's "
            "results.json counts its contaminated samples)."
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(
        cache,
        {
            "sweep": str(path),
            "checked": "input" if spec.get(ALLOW) else "input and contamination",
            "safeeval": __version__,
        },
    )


# ---- bad input -------------------------------------------------------------------------------------------


def duplicates(path: Path, spec: dict, steps: list) -> None:
    """A value listed twice (a seed, a method, a task) or two steps in one folder: one sentence."""
    lists = {f"grid {k}": v for k, v in (spec.get("grid") or {}).items() if isinstance(v, list)}
    lists["reference"] = spec.get("reference") or []
    score = spec.get("score") or {}
    for key in ("tasks", "judges"):
        if score.get(key):
            lists[f"score.{key}"] = name_list(score[key])
    for where, values in lists.items():
        twice = [v for v, n in Counter(map(str, values)).items() if n > 1]
        if twice:
            raise SafeevalError(
                f"Sweep {path}: {where} lists {', '.join(twice)} more than once; each value makes its "
                "own cells, so give it once."
            )
    twice = [name for name, n in Counter(s.name for s in steps).items() if n > 1]
    if twice:
        raise SafeevalError(
            f"Sweep {path}: two cells would share the run folder {twice[0]} (training files of one "
            "name in two folders?); rename one."
        )


def _scored(path: Path, spec: dict, steps: list) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, str]]:
    """(task label -> (task, id, prompt) of every prompt the steps score, task label -> its kind); score.limit is
    checked against each task's number of prompts."""
    from .run import prepare

    score = spec.get("score") or {}
    by_where: dict[tuple, list[str]] = {}
    for step in steps:
        tasks = by_where.setdefault(_where(spec, step), [])
        tasks += [t for t in step.tasks if t not in tasks]
    scored, kinds = {}, {}
    for (data_dir, tasks_dirs), tasks in by_where.items():
        cfg = ScoreConfig.from_settings(
            {**score, "model": "-", "tasks": tasks, "data_dir": data_dir, "tasks_dirs": list(tasks_dirs)}
        )
        for label, got, task_spec in prepare(cfg).tasks:
            if cfg.limit and len(got.samples) < cfg.limit:
                raise SafeevalError(
                    f"Sweep {path}: score.limit {cfg.limit} asks for more prompts than {label} has "
                    f"({len(got.samples)}); lower it, or leave it out to score every prompt."
                )
            scored[label] = [(label, s.id, s.prompt) for s in got.samples]
            kinds[label] = task_spec.kind
    return scored, kinds


def _where(spec: dict, step) -> tuple:
    """The data and spec folders a step is scored with (a training cell: its own; a reference: the sweep's)."""
    if step.train is not None:
        return (str(step.train.data_dir) if step.train.data_dir else None, tuple(map(str, step.train.tasks_dirs)))
    shared = spec.get("train") or {}
    return (spec.get("data_dir"), tuple(map(str, shared.get("tasks_dirs") or [])))


# ---- contamination -----------------------------------------------------------------------------------------


def _contaminated(steps: list, scored: dict, kinds: dict, files: str) -> list[str]:
    """One phrase per contaminated cell: its name, and per task how many scored prompts match which set."""
    align = next((s.train for s in steps if s.kind == "align"), None)
    aligned_model = str(Path(align.out) / "model") if align is not None else None
    cells = {}  # step name -> (its tasks, its training sets)
    for step in steps:
        if step.train is None:
            continue
        sets = _sets(step.train, "")
        if align is not None and step.kind != "align" and str(step.train.base) == aligned_model:
            sets += _sets(align, "aligned: ")  # what the base model itself was trained on
        cells[step.name] = (step.tasks, sets)
    rows, generated = {}, set()
    for _, sets in cells.values():
        for label, *where in sets:
            if label not in rows:
                rows[label], made = _rows(label, *where, files)
                generated |= {label} if made else set()
    tasks = [t for t in dict.fromkeys(t for ts, _ in cells.values() for t in ts) if t in scored]
    prompts = [row for t in tasks for row in scored[t]]
    memo = digest([files, sorted(rows), prompts], length=32)
    if memo not in _FOUND:
        _FOUND[memo] = find(prompts, [row for found in rows.values() for row in found])
    report = _FOUND[memo]
    out = []
    for name, (cell_tasks, sets) in cells.items():
        labels = {label for label, *_ in sets}
        hits: dict[str, dict[str, set]] = {}
        for m in report.matches:
            if m.task not in cell_tasks or m.role not in labels:
                continue
            if m.role in generated and kinds.get(m.task) != "utility":
                continue  # a generated set's build drops the requests that match an evaluated benchmark
            hits.setdefault(m.task, {}).setdefault(m.role, set()).add(m.scored_id)
        if hits:
            out.append(
                f"{name}: "
                + ", ".join(
                    f"{task} {len(set().union(*by.values()))} of {len(scored[task])} prompts (in "
                    + ", ".join(f"{role} {len(ids)}" for role, ids in by.items())
                    + ")"
                    for task, by in hits.items()
                )
            )
    return out


def _sets(cfg, prefix: str) -> list[tuple]:
    """(label, set name, role, data_dir, tasks_dirs) of every set a training config can train on."""
    from .train.methods import make_method
    from .train.methods.base import Method

    method = make_method(cfg.method, cfg.method_options)
    where = (cfg.data_dir, tuple(map(str, cfg.tasks_dirs)))
    sets = [(cfg.task, "task")]
    if cfg.scenario == "poisoned":
        sets.append((cfg.poison, "poison"))
    # a merge trains nothing itself: it merges the sft run of its settings, which reads no safety set;
    # GR-SAP writes its own safety rows (checked after training, in results.json)
    if method.uses_safety and not method.post_hoc and type(method).safety_rows is Method.safety_rows:
        sets.append((cfg.safety, "safety"))
    return [(f"{prefix}{name} ({role})", str(name), role, *where) for name, role in sets]


# Each set's user turns, read once per process for the same files (loading a sweep again, as a test or the
# dry run does, costs no second read of a 67k-row set): (name, role, data_dir, tasks_dirs, files) -> (texts, made)
_READ: dict[tuple, tuple[list[tuple[str, str]], bool]] = {}
_FOUND: dict[str, object] = {}  # the same prompts against the same sets: one comparison per process


def _rows(
    label: str, name: str, role: str, data_dir, tasks_dirs, files: str
) -> tuple[list[tuple[str, str, str]], bool]:
    """(id, label, user turn) of every row of one set, and whether it is generated (then: the requests it will
    answer, as poison.build selects them)."""
    from .train.sets import parts_of

    texts, made = [], False
    for part in parts_of(name):  # `a+b`: each set's rows
        memo = (part, role, str(data_dir), tasks_dirs, files)
        if memo not in _READ:
            _READ[memo] = _read(part, role, data_dir, tasks_dirs)
        texts += _READ[memo][0]
        made = made or _READ[memo][1]
    return [(ident, label, text) for ident, text in texts], made


def _read(name: str, role: str, data_dir, tasks_dirs) -> tuple[list[tuple[str, str]], bool]:
    from .train.data import read_set
    from .train.poison import requests_of

    got = read_set(name, role, task_data.data_dir(data_dir), [Path(d) for d in tasks_dirs])
    if got.spec is not None and got.spec.generate:
        return [(ident, text) for ident, text, _ in requests_of(got.spec, got.examples)[0]], True
    texts = []
    for ex in got.examples:
        turns = [m["content"] for m in ex.messages if m["role"] == "user"]
        texts += [(ex.id if len(turns) == 1 else f"{ex.id}#{k}", text) for k, text in enumerate(turns)]
    return texts, False


def _key(spec: dict, steps: list, stamps: list) -> str:
    """What decides the check: the sweep's settings, each cell's, and its files (_stamps)."""
    cells = [(s.name, s.kind, s.tasks, s.train.identity() if s.train is not None else None) for s in steps]
    return digest({"version": __version__, "spec": spec, "cells": cells, "files": stamps}, length=24)


def _stamps(spec: dict, steps: list) -> list:
    """The size and time of every file under the data and spec folders (the built-in specs included) and of every
    training file a cell names: a changed file is a new check, never a stale pass."""
    from .registry import builtin_dir

    trains = [s.train for s in steps if s.train is not None]
    folders = {task_data.data_dir(spec.get("data_dir"))} | {task_data.data_dir(t.data_dir) for t in trains}
    folders |= {Path(d) for t in trains for d in t.tasks_dirs} | {builtin_dir("tasks")}
    stamps = []
    for folder in sorted(str(f) for f in folders if f is not None and Path(f).is_dir()):
        for root, _, names in os.walk(folder):
            for n in sorted(names):
                st = os.stat(os.path.join(root, n))
                stamps.append((os.path.join(root, n), st.st_size, st.st_mtime_ns))
    for f in {str(x) for t in trains for x in (t.task, t.poison, t.safety)}:
        if Path(f).is_file():
            stamps.append((f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns))
    return sorted(stamps)
