"""A whole study from one YAML file: reference models scored as they are, an alignment run, a grid of
fine-tuning runs (task x scenario x method x seed) each trained and scored, then the leaderboard and report.

Keys: runs (folder), data_dir, train (settings for every training), align (the alignment run's own),
finetune (the grid's own), grid (task/scenario/method/seed lists), method_options (per method), task_settings
(per task: training settings such as max_length for long answers), score,
reference (models scored as they are), report (dir, baseline = a step name, samples = how many of each task's
samples per run the HTML lists); on a Ray cluster (cluster.py) also
resources (per stage or per method: num_cpus, num_gpus, memory in bytes) and max_retries (a step whose worker died).

Every model is scored on score.tasks plus the utility it was trained for: a fine-tuning cell adds the evaluation
task its training set is asked with (its `prompt_from`: gsm8k for gsm8k), the reference and aligned models every
such task of the grid, so each cell has its baseline. Every step is cached where it lands (a finished training
folder is not retrained, the store serves every generation and verdict already made), so an interrupted sweep
resumes by running the same command again.

The steps form a graph (`Step.after`): cells that fine-tune the aligned model wait for the alignment run, and a
merge waits for the plain sft run it edits. Both runners follow it: this module's, one step after another in an
order that respects it, and cluster.py's, where Ray runs every step whose inputs are ready.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import preflight
from .config import ScoreConfig
from .errors import SafeevalError
from .progress import Reporter, Say, quiet_libraries, silent
from .registry import name_list
from .train import load_config, train
from .train.config import TrainConfig, task_label
from .train.evaluate import DEFAULT_TASKS, score_trained

SWEEP_KEYS = {
    "name",
    "description",
    "runs",
    "data_dir",
    "train",
    "score",
    "reference",
    "align",
    "finetune",
    "grid",
    "method_options",
    "task_settings",
    "report",
    "allow_contamination",
    "resources",
    "max_retries",
}
# A tuple: the order of the steps must not vary by process. Seed-major, scenarios innermost: a study cut short
# still holds every method at its first seed, in both scenarios, before any method gets a second seed.
GRID_KEYS = ("task", "seed", "method", "scenario")
STAGES = ("reference", "align", "finetune")  # what `resources` may name, besides methods
RESOURCES = ("num_cpus", "num_gpus", "memory")  # Ray's names; memory in bytes
REPORT_KEYS = ("dir", "baseline", "samples")
# The HTML lists this many samples per task and run by default: a grid of 54 cells x 2,700 prompts would make a
# page of over 100 MB; every sample stays in its run's samples.jsonl, which the page names.
REPORT_SAMPLES = 20
MAX_RETRIES = 3  # Ray's own default: a step whose worker died is run again up to this often


@dataclass
class Step:
    name: str  # the run folder's name
    kind: str  # "reference", "align", "finetune" or "shared-sft" (the sft run merges edit; trained, not scored)
    train: TrainConfig | None = None
    model: str | None = None  # reference models only
    tasks: list[str] = field(default_factory=list)  # what it is scored on: score.tasks + its utility
    after: list[str] = field(default_factory=list)  # the steps whose output it reads
    resources: dict = field(default_factory=dict)  # what it asks a Ray cluster for (the file's; defaults in cluster.py)


def load_sweep(path: Path, data_dir: Path | None = None) -> tuple[dict, list[Step]]:
    """data_dir, when given, replaces the file's data_dir (the benchmark files' folder)."""
    spec = _read_spec(path, data_dir)
    runs = Path(spec["runs"])
    shared = {**(spec.get("train") or {}), **({"data_dir": spec["data_dir"]} if spec.get("data_dir") else {})}
    steps = [Step(f"reference-{Path(str(m)).name}", "reference", model=str(m)) for m in spec.get("reference") or []]
    base = None
    if spec.get("align"):
        align = load_config(None, {**shared, **spec["align"], "out": runs / "aligned", "save_merged": True})
        steps.append(Step("aligned", "align", align))
        base = str(runs / "aligned" / "model")
    steps += _finetune_steps(spec, path, shared, base, runs)
    scored = name_list((spec.get("score") or {}).get("tasks", DEFAULT_TASKS))
    cells = [s.train for s in steps if s.kind == "finetune"]
    for step in steps:
        step.tasks = _with_utility(scored, [step.train] if step.kind == "finetune" else cells)
    preflight.duplicates(path, spec, steps)  # before the graph: two steps of one name cannot be ordered
    steps = _link(steps, runs)
    _cluster_settings(spec, path, steps)
    baseline = _report_settings(spec, path)["baseline"]
    scored = [s.name for s in steps if s.kind != "shared-sft"]
    if baseline is not None and baseline not in scored:
        raise SafeevalError(f"Sweep {path}: report baseline '{baseline}' is not a step; steps: {', '.join(scored)}.")
    preflight.check(path, spec, steps)  # bad input and contaminated cells stop here, before any step runs
    return spec, steps


def _report_settings(spec: dict, path: Path) -> dict:
    """The report block with its defaults; unknown keys and a bad sample count stop the sweep before it runs."""
    report = spec.get("report") or {}
    if not isinstance(report, dict) or set(report) - set(REPORT_KEYS):
        raise SafeevalError(f"Sweep {path}: report takes {', '.join(REPORT_KEYS)}; got {report!r}.")
    samples = report.get("samples", REPORT_SAMPLES)
    if samples != "all" and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 0):
        raise SafeevalError(f"Sweep {path}: report samples must be a count (0 or more) or 'all'; got {samples!r}.")
    return {"dir": report.get("dir"), "baseline": report.get("baseline"), "samples": samples}


def _read_spec(path: Path, data_dir: Path | None) -> dict:
    """The sweep file, its keys and score settings checked; data_dir (when given) replaces the file's."""
    try:
        spec = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SafeevalError(f"Cannot read sweep {path}: {exc}") from None
    if data_dir is not None and isinstance(spec, dict):
        spec["data_dir"] = str(data_dir)
    unknown = sorted(set(spec) - SWEEP_KEYS)
    if unknown:
        raise SafeevalError(f"Sweep {path} has unknown keys {unknown}; allowed: {sorted(SWEEP_KEYS)}.")
    if not spec.get("runs") or not spec.get("grid"):
        raise SafeevalError(f"Sweep {path} needs 'runs' (a folder) and 'grid'.")
    try:  # every score setting is checked before anything runs
        ScoreConfig.from_settings({**(spec.get("score") or {}), "model": "-"})
    except SafeevalError as exc:
        raise SafeevalError(f"Sweep {path}: {exc}") from None
    return spec


def _finetune_steps(spec: dict, path: Path, shared: dict, base: str | None, runs: Path) -> list[Step]:
    """One fine-tuning step per grid cell, its TrainConfig and method options checked before anything runs."""
    from .train.methods import make_method

    grid = spec["grid"]
    if set(grid) - set(GRID_KEYS):
        raise SafeevalError(
            f"Sweep {path}: grid keys are {', '.join(GRID_KEYS)}; got {sorted(set(grid) - set(GRID_KEYS))}."
        )
    axes = {k: grid[k] if isinstance(grid[k], list) else [grid[k]] for k in GRID_KEYS if k in grid}
    per_method = spec.get("method_options") or {}
    steps = []
    for values in itertools.product(*axes.values()):
        cell = dict(zip(axes, values))
        parts = [task_label(str(cell.get("task", ""))), *(str(cell.get(k, "")) for k in ("scenario", "method"))]
        name = "-".join(parts) + f"-s{cell.get('seed', 0)}"
        overrides = {
            **shared,
            **(spec.get("finetune") or {}),
            **cell,
            **((spec.get("task_settings") or {}).get(cell.get("task")) or {}),
            "out": runs / name,
            "method_options": {**(shared.get("method_options") or {}), **(per_method.get(cell.get("method"), {}))},
        }
        if base and "base" not in shared:
            overrides["base"] = base
        if "base" not in overrides and not base:
            raise SafeevalError(f"Sweep {path}: give 'align' or a 'base' under 'train'.")
        cfg = load_config(None, overrides)
        make_method(cfg.method, cfg.method_options)  # every cell's options are checked before anything runs
        steps.append(Step(name, "finetune", cfg))
    return steps


def _link(steps: list[Step], runs: Path) -> list[Step]:
    """Each step's `after`, and the steps in an order that respects it. A cell fine-tuning the aligned model waits
    for the alignment run. A merge (a post-hoc method) edits the plain sft run of its settings: the grid's own cell
    with those settings, or else a step added here, in the folder the trainer would give it and shared by every merge
    of those settings, so no two merges train it at once and none relies on the order of the grid."""
    from .train.methods import make_method
    from .train.trainer import default_out, shared_sft

    cells = {s.train.hash: s for s in steps if s.kind == "finetune"}
    linked, added = [], {}
    for step in steps:
        if step.kind == "finetune" and make_method(step.train.method, step.train.method_options).post_hoc:
            sft = shared_sft(step.train)
            source = cells.get(sft.hash) or added.get(sft.hash)
            if source is None:
                sft.out = runs / default_out(sft).name
                source = added[sft.hash] = Step(sft.out.name, "shared-sft", sft)
                linked.append(source)  # just before the first merge that edits it
            step.after.append(source.name)
        linked.append(step)
    aligned = next((s for s in linked if s.kind == "align"), None)
    for step in linked:
        if aligned and step.kind in ("finetune", "shared-sft") and step.train.base == str(aligned.train.out / "model"):
            step.after.insert(0, aligned.name)
    order, placed = [], set()
    while len(order) < len(linked):  # stable: a step moves back only past the steps it waits for
        step = next(s for s in linked if s.name not in placed and set(s.after) <= placed)
        order.append(step)
        placed.add(step.name)
    return order


def _cluster_settings(spec: dict, path: Path, steps: list[Step]) -> None:
    """`resources` (per stage, then per method for the grid's cells) and `max_retries`, checked before anything runs."""
    from .train.methods import METHODS

    given = spec.get("resources") or {}
    if not isinstance(given, dict):
        raise SafeevalError(f"Sweep {path}: resources must map a stage or a method to what its steps ask for.")
    for name, asked in given.items():
        if name not in STAGES and name not in METHODS:
            raise SafeevalError(
                f"Sweep {path}: resources are given per stage ({', '.join(STAGES)}) or per method; '{name}' is neither."
            )
        if not isinstance(asked, dict) or set(asked) - set(RESOURCES):
            raise SafeevalError(f"Sweep {path}: resources of {name} take {', '.join(RESOURCES)}; got {asked!r}.")
        for key, value in asked.items():
            split_gpus = key == "num_gpus" and _number(value) and value > 1 and value != int(value)
            if not _number(value) or value < 0 or split_gpus:
                raise SafeevalError(
                    f"Sweep {path}: {name}.{key} must be a number of at least 0 (whole GPUs above one); got {value!r}."
                )
    for step in steps:
        stage = "finetune" if step.kind == "shared-sft" else step.kind
        method = step.train.method if stage == "finetune" else None
        step.resources = {**given.get(stage, {}), **given.get(method, {})}
    retries = spec.get("max_retries", MAX_RETRIES)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise SafeevalError(f"Sweep {path}: max_retries must be a whole number of at least 0; got {retries!r}.")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_sweep(
    path: Path,
    reporter: Reporter = silent,
    say: Say = print,
    store: Path | None = None,
    isolate: bool = True,
    data_dir: Path | None = None,
    report_only: bool = False,
    verbose: bool = False,
) -> dict:
    """Run (or resume) every step, then write the leaderboard and the HTML report; returns a summary.
    isolate: each step in a fresh process, so a long sweep's memory is that of one step, not of all (reporter
    and say then travel to it by reference: module-level functions).
    report_only: run nothing; report the steps finished so far (a study cut short still publishes them)."""
    spec, steps = load_sweep(path, data_dir)
    runs = Path(spec["runs"])
    if report_only:
        report = write_report(spec, runs, steps)
        for name in report["missing"]:
            say(f"not finished, left out of the report: {name}")
        scored = [s for s in steps if s.kind != "shared-sft"]
        return {"sweep": str(path), "steps": len(scored) - len(report["missing"]), "seconds": 0.0, **report}
    started = time.perf_counter()
    timings = {}
    if isolate and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the finally below stops the running step
    for i, step in enumerate(steps, 1):
        t0 = time.perf_counter()
        label = (
            step.model
            if step.kind == "reference"
            else (f"{step.train.method} on {step.train.task} ({step.train.scenario}, seed {step.train.seed})")
        )
        say(f"[{i}/{len(steps)}] {step.kind}: {label}")
        if _weights_gone(spec, step):
            say(f"{step.name} already finished with these settings, its weights gone (kept without them); skipped.")
            timings[step.name] = 0.0
            continue
        if isolate:
            _run_in_child(path, i - 1, step, store, reporter, say, data_dir, verbose)
        else:
            run_step(spec, step, store, reporter, say)
        timings[step.name] = round(time.perf_counter() - t0, 1)
    report = write_report(spec, runs, steps)
    summary = {
        "sweep": str(path),
        "steps": len(steps),
        "seconds": round(time.perf_counter() - started, 1),
        "step_seconds": timings,
        **report,
    }
    (runs / "sweep.json").write_text(json.dumps(summary, indent=2))
    return summary


def _run_in_child(
    path: Path,
    index: int,
    step: Step,
    store: Path | None,
    reporter: Reporter,
    say: Say,
    data_dir: Path | None,
    verbose: bool,
) -> None:
    """Step `index` of the sweep in a fresh (spawned) process, which reloads the sweep file by itself."""
    child = multiprocessing.get_context("spawn").Process(
        target=_step_in_child, args=(str(path), index, store, reporter, say, data_dir, verbose)
    )
    child.start()
    try:
        child.join()
    finally:  # Ctrl-C or a kill of this process must not leave the step running on its own
        if child.is_alive():
            child.terminate()
            child.join()
    if child.exitcode != 0:
        raise SafeevalError(
            f"Step {step.name} failed (exit code {child.exitcode}); what it finished is kept: "
            "run the sweep again to resume."
        )


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _weights_gone(spec: dict, step: Step) -> bool:
    """A finished step whose own trained weights are no longer here (its record kept or restored without them):
    running it again, which re-judges a finished step from its cache, would stop at the missing folder."""
    if step.train is None or not finished(spec, step):
        return False
    from . import results

    config = results.read(run_folder(spec, step)).config or {}
    own = Path(step.train.out).resolve()
    used = [config.get("model"), (config.get("backend_options") or {}).get("adapter")]
    return any(p and own in Path(p).resolve().parents and not Path(p).exists() for p in used)


def run_folder(spec: dict, step: Step) -> Path:
    """Where a step's results.json lands."""
    runs = Path(spec["runs"])
    return runs / step.name if step.kind == "reference" else runs / step.name / "score"


def step_settings(spec: dict, step: Step, store: Path | None) -> dict:
    """What a step is scored with: the sweep's score block, the step's tasks, its run folder."""
    return {**(spec.get("score") or {}), "tasks": step.tasks, "store": store, "out": run_folder(spec, step)}


def finished(spec: dict, step: Step) -> bool:
    """Whether running the step again would only read back what its folders hold: a trained model's training.json
    has the configuration it would train, and its results.json the settings it would be scored with now."""
    from . import results
    from .train.evaluate import score_config
    from .train.trainer import base_changed

    record = None
    if step.train is not None:
        try:
            record = json.loads((Path(step.train.out) / "training.json").read_text())
        except (OSError, ValueError):
            return False
        trained_from = (record.get("base_model") or {}).get("fingerprint")
        if not step.train.is_run(record) or base_changed(step.train, trained_from):
            return False  # so it runs: the trainer then says why the folder cannot be used
        if step.kind == "shared-sft":
            return True
    try:
        recorded = results.read(run_folder(spec, step)).config
        expected = (
            reference_config(spec, step, None)
            if step.kind == "reference"
            else score_config(record, step.train, step_settings(spec, step, None), stage=step.kind)
        )
    except SafeevalError:  # not there, or a setting the step itself will report
        return False
    return recorded == json.loads(json.dumps(expected.settings()))


def reference_config(spec: dict, step: Step, store: Path | None) -> ScoreConfig:
    """A model scored as it is, in the same settings as the trained ones (the training block's data and spec
    folders included), so every row of the study's leaderboard was scored alike."""
    shared = spec.get("train") or {}
    return ScoreConfig.from_settings(
        {
            **step_settings(spec, step, store),
            "model": step.model,
            "data_dir": spec.get("data_dir"),
            "tasks_dirs": shared.get("tasks_dirs"),
            "chat_template": shared.get("chat_template"),
        }
    )


def run_step(spec: dict, step: Step, store: Path | None, reporter: Reporter, say: Say) -> None:
    from .run import score

    if step.kind == "reference":
        score(reference_config(spec, step, store), reporter=reporter)
        return
    if store is not None:
        step.train.store = store
    record = train(step.train, notify=say, reporter=reporter)
    if step.kind == "shared-sft":  # the run merges edit: they are scored, it is not
        return
    score_trained(record, step.train, step_settings(spec, step, store), reporter, stage=step.kind)


def _with_utility(tasks: list[str], trains: list[TrainConfig]) -> list[str]:
    """tasks plus the evaluation task each training set is asked with (its prompt_from), each once."""
    from .registry import load_train_sets

    specs = {}
    for cfg in trains:
        key = tuple(map(str, cfg.tasks_dirs))
        if key not in specs:
            specs[key] = load_train_sets(cfg.tasks_dirs)
        spec = specs[key].get(cfg.task)  # a user's file has no evaluation task of its own
        utility = spec.prompt_from if spec is not None else None
        if utility and utility not in tasks:
            tasks = [*tasks, utility]
    return tasks


def _step_in_child(
    path: str, index: int, store: Path | None, reporter: Reporter, say: Say, data_dir: Path | None, verbose: bool
) -> None:
    """One step in a spawned process: user errors end in one sentence and exit code 2."""
    import sys

    quiet_libraries(verbose)
    try:
        spec, steps = load_sweep(Path(path), data_dir)
        run_step(spec, steps[index], store, reporter, say)
    except SafeevalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def write_report(spec: dict, runs: Path, steps: list[Step]) -> dict:
    from .report import leaderboard as lb
    from .report.html import render_html
    from .report.runs import load_runs

    done, missing = [], []
    for s in steps:
        if s.kind == "shared-sft":
            continue
        run = run_folder(spec, s)
        if (run / "results.json").exists():
            done.append((s, run))
        else:
            missing.append(s.name)
    if not done:
        raise SafeevalError(f"No step of the sweep has finished yet (nothing under {runs}); run it first.")
    loaded = load_runs([run for _, run in done])
    report = _report_settings(spec, runs)
    folder = Path(report["dir"] or runs)
    folder.mkdir(parents=True, exist_ok=True)
    # the baseline is a step's name (e.g. aligned): its run folder, never a label fragment that matches many
    named = {s.name: run for s, run in done}
    baseline = str(named[report["baseline"]]) if report["baseline"] in named else None
    written = {"missing": missing}
    board = lb.build(loaded, baseline=baseline)
    (folder / "leaderboard.md").write_text(lb.render(board, "markdown"))
    (folder / "leaderboard.csv").write_text(lb.render(board, "csv"))
    written["leaderboard"] = str(folder / "leaderboard.md")
    if len({s.train.seed for s, _ in done if s.train}) > 1:
        grouped = lb.build(loaded, group_by=["model", "trained_on", "method", "scenario"], baseline=baseline)
        (folder / "leaderboard-by-method.md").write_text(lb.render(grouped, "markdown"))
        written["grouped"] = str(folder / "leaderboard-by-method.md")
    samples = None if report["samples"] == "all" else report["samples"]
    page = render_html(loaded, lb.single_baseline(loaded, baseline), max_samples=samples)
    (folder / "report.html").write_text(page, encoding="utf-8")
    written["html"] = str(folder / "report.html")
    return written
