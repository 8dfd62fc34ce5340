"""Scoring a trained model with the score path; the result carries how the model was made."""

from __future__ import annotations

from pathlib import Path

from ..generation import Reporter, silent
from .config import TrainConfig
from .trainer import training_block

SCORE_KEYS = {"tasks", "judges", "limit", "max_new_tokens", "backend", "out", "store", "batch_size", "system_prompt"}
DEFAULT_TASKS = ["advbench", "smoke"]
# The engine that scores a trained model unless score.backend says otherwise: the measured winner for a study cell's
# workload (~2,000 prompts, <= 32 new tokens, one engine start per cell): benchmarks/README.md, "Which engine".
DEFAULT_BACKEND = "hf"


def score_trained(record: dict, cfg: TrainConfig, settings: dict, reporter: Reporter = silent,
                  command: list[str] | None = None, stage: str = "finetune") -> dict:
    """settings: tasks, judges, limit, max_new_tokens, backend, out, store, batch_size (all optional).
    stage "align" marks the provider's own alignment run, so a leaderboard does not mistake it for a user's."""
    from ..errors import SafeevalError
    from ..run import ScoreConfig, score

    unknown = sorted(set(settings) - SCORE_KEYS)
    if unknown:
        raise SafeevalError(f"Unknown score setting(s) {unknown}; valid: {', '.join(sorted(SCORE_KEYS))}.")
    output = record["output"]
    options = {"adapter": None if output["model"] else output["adapter"], "chat_template": cfg.chat_template}
    if settings.get("batch_size"):
        options["batch_size"] = int(settings["batch_size"])
    score_cfg = ScoreConfig(
        model=output["model"] or record["base_model"]["name"],
        tasks=_names(settings.get("tasks", DEFAULT_TASKS)), judges=_names(settings.get("judges", ["keyword"])),
        backend=settings.get("backend", DEFAULT_BACKEND), limit=settings.get("limit"), seed=cfg.seed,
        max_new_tokens=int(settings.get("max_new_tokens", 256)), system_prompt=settings.get("system_prompt"),
        out=Path(settings.get("out") or Path(record["config"]["out"]) / "score"), store=settings.get("store"),
        data_dir=cfg.data_dir, tasks_dirs=cfg.tasks_dirs, backend_options=options, command=command or [],
        training=_block(record, stage))
    return score(score_cfg, reporter=reporter)


def _block(record: dict, stage: str) -> dict:
    block = {**training_block(record), "stage": stage}
    if stage == "align":
        block.update(method=f"align ({block['method']})", scenario="-")
    return block


def _names(value) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]
