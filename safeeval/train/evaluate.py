"""Scoring a trained model with the score path; the result carries how the model was made."""

from __future__ import annotations

from pathlib import Path

from ..config import ScoreConfig
from ..progress import Reporter, silent
from ..results import RunResult
from .config import TrainConfig
from .trainer import training_block

DEFAULT_TASKS = ["advbench", "smoke"]  # a trained model is scored on safety unless told otherwise


def score_config(record: dict, cfg: TrainConfig, settings: dict, command: list[str] | None = None,
                 stage: str = "finetune") -> ScoreConfig:
    """The settings (a sweep's score block, train-and-score's flags; None = not given) on top of the defaults,
    with what the training fixes: the model it wrote, its chat template, the data and spec folders it read.
    stage "align" marks the provider's own alignment run, so a leaderboard does not mistake it for a user's."""
    output = record["output"]
    fixed = {"model": output["model"] or record["base_model"]["name"],
             "adapter": None if output["model"] else output["adapter"], "chat_template": cfg.chat_template,
             "seed": cfg.seed, "data_dir": cfg.data_dir, "tasks_dirs": cfg.tasks_dirs, "command": command or [],
             "training": _block(record, stage)}
    given = {k: v for k, v in settings.items() if v is not None}
    defaults = {"tasks": DEFAULT_TASKS, "store": cfg.store, "out": Path(record["config"]["out"]) / "score"}
    return ScoreConfig.from_settings({**defaults, **given, **fixed})


def score_trained(record: dict, cfg: TrainConfig, settings: dict, reporter: Reporter = silent,
                  command: list[str] | None = None, stage: str = "finetune") -> RunResult:
    from ..run import score

    return score(score_config(record, cfg, settings, command, stage), reporter=reporter)


def _block(record: dict, stage: str) -> dict:
    block = {**training_block(record), "stage": stage}
    if stage == "align":
        block.update(method=f"align ({block['method']})", scenario="-")
    return block
