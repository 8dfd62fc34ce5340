"""Finished runs, read from their folders (results.json + samples.jsonl) or from the store."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SafeevalError
from ..results import SCHEMA_VERSION
from ..store import Store
from ..train.config import task_label


@dataclass
class Run:
    results: dict
    path: Path | None = None  # the run folder, when read from one
    tag: str = ""  # tells apart runs whose model, method, scenario and seed are all the same
    _samples: list[dict] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """model × trained_on × method × scenario × seed, as the leaderboard's rows are named."""
        parts = [self.model, self.trained_on, self.method, self.scenario, f"seed {self.seed}", self.tag]
        return " · ".join(p for p in parts if p and p != "-")

    @property
    def model(self) -> str:
        return str(self.results.get("model", {}).get("name", "?"))

    @property
    def training(self) -> dict:
        return self.results.get("training") or {}

    @property
    def trained_on(self) -> str:
        """The user's task a fine-tuned model learned (a file by its stem); '-' for the provider's alignment."""
        task = self.training.get("task")
        if not task or self.training.get("stage") == "align":
            return "-"
        return task_label(task)

    @property
    def method(self) -> str:
        return str(self.training.get("method", "-"))

    @property
    def scenario(self) -> str:
        return str(self.training.get("scenario", "-"))

    @property
    def seed(self) -> int:
        return int(self.training.get("seed", self.results.get("seed", 0)))

    def samples(self) -> list[dict]:
        """Per-sample rows (prompts, responses, verdicts); only runs read from a folder have them."""
        if self._samples is None:
            if self.path is None or not (self.path / "samples.jsonl").exists():
                raise SafeevalError(f"Run {self.label} has no samples.jsonl beside its results; per-sample "
                                    "comparisons need the run folder.")
            with open(self.path / "samples.jsonl", encoding="utf-8") as f:
                self._samples = [json.loads(line) for line in f]
        return self._samples

    def metrics(self) -> dict[tuple[str, str], dict]:
        """(task, judge or scorer) -> that block of results.json's metrics."""
        return {(task, name): block for task, by in self.results.get("metrics", {}).items() for name, block in by.items()}


def load_run(path: Path) -> Run:
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.exists():
        raise SafeevalError(f"No results.json at {file}; pass run folders written by `safeeval score`.")
    try:
        results = json.loads(file.read_text())
    except ValueError as exc:
        raise SafeevalError(f"{file} is not valid JSON: {exc}.") from None
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SafeevalError(f"{file} has results schema version {version}; this safeeval reads version {SCHEMA_VERSION}.")
    return Run(results, file.parent)


def load_runs(paths: list[Path] = (), store: Path | None = None) -> list[Run]:
    runs = [load_run(p) for p in paths]
    if store is not None:
        if not Path(store).exists():
            raise SafeevalError(f"No store at {store}.")
        db = Store(store)
        try:
            for out, results in db.get_runs():
                folder = Path(out)
                runs.append(Run(results, folder if (folder / "samples.jsonl").exists() else None))
        finally:
            db.close()
    if not runs:
        raise SafeevalError("No runs given: pass run folders, or --store with runs recorded in it.")
    unique: dict[str, Run] = {}
    for run in runs:  # the same folder given twice (also found in the store) is one run
        unique.setdefault(str(run.path.resolve()) if run.path else str(id(run)), run)
    runs = list(unique.values())
    counts = Counter(r.label for r in runs)
    for run in runs:
        if counts[run.label] > 1:
            # a train-and-score run's results sit in <run>/score: the run's folder names it
            name = run.path and (run.path.parent.name if run.path.name == "score" else run.path.name)
            run.tag = name or str(run.results.get("started_at", ""))
    return runs
