"""The training rows behind a trained model, read back from its run folder and those of the runs before it.

A run folder holds training.json (the sets it read, each with its source and sha256) and mix.jsonl (the id and
role of every row it mixed). The rows' texts are not stored twice: each set is loaded again the way training
loaded it, and its source must equal the recorded one, so the texts are provably the trained ones. Then:
- task and poison rows: those the mix lists;
- safety rows: the whole set, because replay and regularisation methods draw safety batches beyond the mix
  (DER, A-GEM, EWC's Fisher, ...), and those draws are not listed;
- the base model: when it is another run's saved model (`<run>/model`, as a sweep's alignment), that run's
  rows too, their roles prefixed by its folder name ("aligned:safety"). A model made elsewhere (SmolLM2 as
  packaged) has training data nobody can list: a note says so.
A merge (linear, ties, ...) reads its rows from the `sft` run it merged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from .. import data as task_data
from ..errors import SafeevalError
from .data import Example
from .sets import load_set
from .synthesis import synthetic_source

ROLES = ("task", "poison", "safety")


def lineage_rows(
    run: Path,
    data_dir: Path | None = None,
    tasks_dirs: list[Path] = (),
    notify: Callable[[str], None] = lambda text: None,
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(id, role, text) for each user turn of every training row of the model in `run` and of the runs it was
    trained from, and notes on what could not be listed. Raises SafeevalError when a set's data changed since."""
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    seen: set[Path] = set()
    folder, prefix = Path(run), ""
    while folder is not None:
        record = _record(folder)
        seen.add(folder.resolve())
        rows += _run_rows(folder, record, prefix, data_dir, list(tasks_dirs), notes)
        base = Path(record["base_model"]["path"])
        parent = base.parent if (base.parent / "training.json").exists() else None
        if parent is None or parent.resolve() in seen:
            notes.append(
                f"the base model {record['base_model']['name']} was not trained by safeeval here: "
                "its own training data is unknown and not checked"
            )
            folder = None
        else:
            folder, prefix = parent, f"{parent.name}:"
    notify(f"lineage of {run}: {len(rows)} training texts")
    return rows, notes


def _record(folder: Path) -> dict:
    path = folder / "training.json"
    if not path.exists():
        raise SafeevalError(f"No training.json in {folder}: not a finished `safeeval train` run.")
    return json.loads(path.read_text())


def _run_rows(
    folder: Path, record: dict, prefix: str, data_dir: Path | None, tasks_dirs: list[Path], notes: list[str]
) -> list[tuple[str, str, str]]:
    mix_folder = Path(record.get("finetuned_run") or folder)
    mixed = _mix(mix_folder / "mix.jsonl")
    if mixed is None:
        notes.append(f"{mix_folder} has no mix.jsonl: every row of its task and poison sets is counted")
    out = []
    for role in ROLES:
        info = (record.get("data") or {}).get(role)
        if not info:
            continue
        examples = _examples(info, role, data_dir, tasks_dirs)
        if role != "safety" and mixed is not None:
            examples = [ex for ex in examples if (role, ex.id) in mixed]
        for ex in examples:
            turns = [m["content"] for m in ex.messages if m["role"] == "user"]
            for k, text in enumerate(turns):
                out.append((ex.id if len(turns) == 1 else f"{ex.id}#{k}", prefix + role, text))
    return out


def _mix(path: Path) -> set[tuple[str, str]] | None:
    if not path.exists():
        return None
    return {(r["role"], str(r["id"])) for r in map(json.loads, path.read_text().splitlines()) if r}


def _examples(info: dict, role: str, data_dir: Path | None, tasks_dirs: list[Path]) -> list[Example]:
    source = str(info.get("source") or "")
    if source.startswith("synthetic:") and " + " not in source:  # a generated set, cached as JSONL with its sha256
        path = Path(source.split(" ")[0].removeprefix("synthetic:"))
        if not path.exists():
            raise SafeevalError(f"The generated set {info['name']} is no longer at {path}; it cannot be checked.")
        got = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        loaded_source = synthetic_source(path)
        examples = [Example(r["id"], r["messages"], role) for r in got]
    else:
        loaded = load_set(info["name"], role, task_data.data_dir(data_dir), tasks_dirs)
        loaded_source, examples = loaded.source, loaded.examples
    if _digest(loaded_source) != _digest(source):
        raise SafeevalError(
            f"The {role} set {info['name']} now reads '{loaded_source}', but the run trained on "
            f"'{source}'; point --data-dir at the files it was trained on."
        )
    return examples


def _digest(source: str) -> str:
    """What identifies a set's data: its files' sha256 where recorded (the folder may be reached by another
    path now), else the whole source (a Hub id)."""
    found = re.findall(r"sha256:([0-9a-fA-F]+)", source)
    return " ".join(found) if found else source
