"""Scoring a trained model with the score path; the result carries how the model was made."""

from __future__ import annotations

from pathlib import Path

from ..config import ScoreConfig
from ..progress import Reporter, silent
from ..results import RunResult
from .config import TrainConfig
from .trainer import training_block

DEFAULT_TASKS = ["advbench", "smoke"]  # a trained model is scored on safety unless told otherwise


def score_config(
    record: dict, cfg: TrainConfig, settings: dict, command: list[str] | None = None, stage: str = "finetune"
) -> ScoreConfig:
    """The settings (a sweep's score block, train-and-score's flags; None = not given) on top of the defaults,
    with what the training fixes: the model it wrote, its chat template, the data and spec folders it read.
    stage "align" marks the provider's own alignment run, so a leaderboard does not mistake it for a user's."""
    output = record["output"]
    fixed = {
        "model": output["model"] or record["base_model"]["name"],
        "adapter": None if output["model"] else output["adapter"],
        "chat_template": cfg.chat_template,
        "seed": cfg.seed,
        "data_dir": cfg.data_dir,
        "tasks_dirs": cfg.tasks_dirs,
        "command": command or [],
        "training": _block(record, stage),
    }
    given = {k: v for k, v in settings.items() if v is not None}
    defaults = {"tasks": DEFAULT_TASKS, "store": cfg.store, "out": Path(record["config"]["out"]) / "score"}
    return ScoreConfig.from_settings({**defaults, **given, **fixed})


def score_trained(
    record: dict,
    cfg: TrainConfig,
    settings: dict,
    reporter: Reporter = silent,
    command: list[str] | None = None,
    stage: str = "finetune",
) -> RunResult:
    """Score the model a training run wrote; its results carry how many scored prompts its lineage trained on."""
    from ..run import score

    score_cfg = score_config(record, cfg, settings, command, stage)
    return score(score_cfg, reporter=reporter, contamination=contamination(record, cfg, score_cfg))


def contamination(record: dict, cfg: TrainConfig, score_cfg: ScoreConfig) -> dict:
    """results.json's `contamination` block (schema in results.py): every prompt the run scores against every
    training row of the model's lineage (lineage.py: this run's task, poison and safety rows, and those of the
    run its base model came from), by the guard's method (contamination.py). A lineage that cannot be read back
    (a set's files changed since) is recorded as not checked, with the reason: never left out silently."""
    from ..contamination import find
    from ..errors import SafeevalError
    from ..run import prepare
    from .lineage import lineage_rows

    try:
        rows, notes = lineage_rows(Path(record["config"]["out"]), cfg.data_dir, cfg.tasks_dirs)
    except SafeevalError as exc:
        return {"status": "not checked", "reason": str(exc)}
    prep = prepare(score_cfg)
    report = find([(label, s.id, s.prompt) for label, got, _ in prep.tasks for s in got.samples], rows)
    found = report.to_dict()
    for task, block in found["tasks"].items():
        block["ids"] = sorted(report.contaminated_ids(task))
    return {"status": "checked", **found, "notes": notes}


def _block(record: dict, stage: str) -> dict:
    block = {**training_block(record), "stage": stage}
    if stage == "align":
        block.update(method=f"align ({block['method']})", scenario="-")
    return block
