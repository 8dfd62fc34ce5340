"""Finished runs, read from their folders (results.json + samples.jsonl) or from the store."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .. import results
from ..errors import SafeevalError
from ..results import RunResult, SampleRecord
from ..store import Store
from ..train.config import task_label


@dataclass
class Run:
    """A finished run as reports see it: its result, and the name it goes by on a leaderboard."""

    result: RunResult
    tag: str = ""  # tells apart runs whose model, method, scenario and seed are all the same

    @property
    def path(self) -> Path | None:
        """The run folder, when read from one that still holds its samples."""
        return self.result.out

    @property
    def label(self) -> str:
        """model × trained_on × method × scenario × seed, as the leaderboard's rows are named."""
        parts = [self.model, self.trained_on, self.method, self.scenario, f"seed {self.seed}", self.tag]
        return " · ".join(p for p in parts if p and p != "-")

    @property
    def model(self) -> str:
        """The model a fine-tuned run was trained from, else the model scored: a merge writes a new folder per run
        where an adapter keeps its base's name, and naming both by the base keeps a method's seeds in one row."""
        t = self.result.training
        base = t.extra.get("base_model") if t is not None and t.stage != "align" else None
        return (base.get("name") if isinstance(base, dict) else None) or self.result.model.name or "?"

    @property
    def trained_on(self) -> str:
        """The user's task a fine-tuned model learned (a file by its stem); '-' for the provider's alignment."""
        t = self.result.training
        if t is None or not t.task or t.stage == "align":
            return "-"
        return task_label(t.task)

    @property
    def method(self) -> str:
        return str(self.result.training.method) if self.result.training else "-"

    @property
    def scenario(self) -> str:
        return str(self.result.training.scenario) if self.result.training else "-"

    @property
    def seed(self) -> int:
        return int(self.result.training.seed if self.result.training else self.result.seed)

    def samples(self) -> list[SampleRecord]:
        """Per-sample rows (prompts, responses, verdicts); only runs read from a folder have them."""
        try:
            return self.result.samples()
        except SafeevalError:
            raise SafeevalError(
                f"Run {self.label} has no samples.jsonl beside its results; per-sample comparisons need the run folder."
            ) from None

    def metrics(self) -> dict[tuple[str, str], dict]:
        """(task, judge or scorer) -> that evaluator's block of metrics."""
        return {(task, name): block for task, by in self.result.metrics.items() for name, block in by.items()}


def load_run(path: Path) -> Run:
    return Run(results.read(path))


def resolve_baseline(runs: list[Run], baseline: str, option: str = "--baseline") -> list[Run]:
    """A run folder (or its results.json), or a label substring; an exact label wins over substrings. `option`
    names the flag that gave it, for the error."""
    path = Path(baseline)
    if path.exists():
        target = (path if path.is_dir() else path.parent).resolve()
        found = [r for r in runs if r.path is not None and r.path.resolve() == target]
        if found:
            return found
        return [load_run(path)]  # a baseline that is not among the runs compared
    exact = [r for r in runs if r.label == baseline]
    if exact:
        return exact
    found = [r for r in runs if baseline.lower() in r.label.lower()]
    if not found:
        raise SafeevalError(
            f"{option} '{baseline}' is neither a run folder nor part of any run's label; "
            f"labels look like '{runs[0].label}'."
        )
    return found


def load_runs(paths: list[Path] = (), store: Path | None = None) -> list[Run]:
    runs = [load_run(p) for p in paths]
    if store is not None:
        if not Path(store).exists():
            raise SafeevalError(f"No store at {store}.")
        db = Store(store)
        try:
            for out, data in db.get_runs():
                folder = Path(out)
                held = folder if (folder / "samples.jsonl").exists() else None
                runs.append(Run(RunResult.from_dict(data, held, f"the run {out} in {store}")))
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
            run.tag = name or run.result.started_at
    return runs
