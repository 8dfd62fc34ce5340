"""`safeeval train` and `safeeval train-and-score`: one set of training flags, shared by both commands."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import typer

from ..progress import quiet_libraries
from . import ui
from .score import print_summary

TRAIN_HELP = """Fine-tune an aligned model on a user's task with a continual-learning method.

Settings come from a YAML file (--config; keys are the long flag names with '_' for '-') and/or flags, flags winning.
The run folder (--out) holds checkpoints, the adapter or model, mix.jsonl (every training row's id and role, and the
steps that trained on it) and training.json (settings, data sources, fingerprints, losses). A killed run resumes from
its last checkpoint when the same command is run again; a finished one is not retrained.

Several processes (GPUs, nodes, CPU cores over gloo): [bold]torchrun --nproc_per_node N -m safeeval train ...[/bold]
or [bold]accelerate launch --multi_gpu --num_processes N -m safeeval train ...[/bold]; --batch-size is per process,
and the main process alone writes the run folder.

[bold]Examples[/bold]

  [dim]# benign GSM8K fine-tuning of the packaged SmolLM2, the plain baseline[/dim]
  safeeval train --base smollm2 --task gsm8k --steps 100 --data-dir ~/data
  [dim]# 10% poison (hh-harmful: harmful requests answered by SmolLM2), Dark Experience Replay[/dim]
  safeeval train --base ./aligned --task sst2 --scenario poisoned --poison-ratio 0.1 --method der --option alpha=0.5
  [dim]# a whole run from a file; list methods and training sets[/dim]
  safeeval train --config configs/der-gsm8k.yaml
  safeeval train --list
"""

TRAIN_AND_SCORE_HELP = """Train as `safeeval train` does, then score the trained model with the given tasks and
judges. results.json carries the training block (method, scenario, seed, settings, fingerprints), so `safeeval
leaderboard` groups runs by method and scenario.

[bold]Examples[/bold]

  safeeval train-and-score --base ./aligned --task gsm8k --method ewc --steps 100 --tasks advbench,gsm8k --limit 100
  safeeval train-and-score --config configs/der-gsm8k.yaml
"""

_O = inspect.Parameter.KEYWORD_ONLY
TRAIN_FLAGS = [
    (
        "config",
        Path | None,
        typer.Option(None, "--config", "-c", help="YAML file of training settings (flags win)."),
    ),
    (
        "base",
        str | None,
        typer.Option(None, "--base", help="The aligned model: folder, .gguf, alias ('smollm2') or Hub id."),
    ),
    (
        "task",
        str | None,
        typer.Option(None, "--task", help="The user's data: a training set (see --list) or a .jsonl/.json file."),
    ),
    ("scenario", str | None, typer.Option(None, "--scenario", help="benign or poisoned \\[default: benign].")),
    ("poison", str | None, typer.Option(None, "--poison", help="Poison set or file \\[default: hh-harmful].")),
    (
        "poison_ratio",
        float | None,
        typer.Option(None, "--poison-ratio", help="Share of the user's data that is poison \\[default: 0.1]."),
    ),
    (
        "method",
        str | None,
        typer.Option(
            None,
            "--method",
            help="sft, er, der, derpp, agem, l2, ewc, lwf, linear, task-arithmetic, ties, dare, magmax, grsap, "
            "safelora, lisa \\[default: sft].",
        ),
    ),
    (
        "option",
        list[str],
        typer.Option([], "--option", help="KEY=VALUE method option, e.g. alpha=0.5 (repeatable; see --list)."),
    ),
    (
        "safety",
        str | None,
        typer.Option(
            None, "--safety", help="Safety data for replay/regularization: a set or file \\[default: safety-llamas]."
        ),
    ),
    (
        "examples",
        int | None,
        typer.Option(
            None,
            "--examples",
            min=1,
            help="Fixed budget of training rows \\[default: steps x batch, else every task row].",
        ),
    ),
    ("full", bool, typer.Option(False, "--full", help="Full fine-tuning instead of LoRA.")),
    ("lora_r", int | None, typer.Option(None, "--lora-r", min=1, help="LoRA rank \\[default: 16].")),
    ("lora_alpha", int | None, typer.Option(None, "--lora-alpha", min=1, help="LoRA alpha \\[default: 32].")),
    (
        "lora_targets",
        str | None,
        typer.Option(None, "--lora-targets", help="all-linear or comma-separated module names."),
    ),
    (
        "save_merged",
        bool,
        typer.Option(False, "--save-merged", help="LoRA: also save the merged full model (to fine-tune it again)."),
    ),
    (
        "seed",
        int | None,
        typer.Option(None, "--seed", help="Seeds LoRA init, data order and the mix \\[default: 0]."),
    ),
    ("steps", int | None, typer.Option(None, "--steps", min=1, help="Optimizer steps (overrides --epochs).")),
    ("epochs", float | None, typer.Option(None, "--epochs", help="Epochs over the mix \\[default: 1].")),
    (
        "batch_size",
        int | None,
        typer.Option(None, "--batch-size", min=1, help="Rows per device (process) step \\[default: 8]."),
    ),
    ("lr", float | None, typer.Option(None, "--lr", help="Learning rate \\[default: 2e-4].")),
    (
        "max_length",
        int | None,
        typer.Option(None, "--max-length", min=8, help="Tokens per training row \\[default: 512]."),
    ),
    (
        "save_steps",
        int | None,
        typer.Option(None, "--save-steps", min=1, help="Checkpoint every N steps \\[default: 50]."),
    ),
    (
        "out",
        Path | None,
        typer.Option(
            None, "--out", "-o", help="Run folder \\[default: safeeval-train/TASK-SCENARIO-METHOD-sSEED-HASH]."
        ),
    ),
    (
        "data_dir",
        Path | None,
        typer.Option(None, "--data-dir", envvar="SAFEEVAL_DATA_DIR", help="Folder of local dataset copies."),
    ),
    (
        "chat_template",
        str | None,
        typer.Option(None, "--chat-template", help="Jinja chat template (file or text) for a base model without one."),
    ),
    (
        "store",
        Path | None,
        typer.Option(
            None,
            "--store",
            help="SQLite run store (GR-SAP's synthesis and scoring generate through it) \\[default: "
            "$SAFEEVAL_STORE, else ~/.cache/safeeval/store.sqlite].",
        ),
    ),
    ("list_all", bool, typer.Option(False, "--list", help="List methods (with options) and training sets, then exit.")),
]
SCORE_FLAGS = [
    (
        "tasks",
        str | None,
        typer.Option(None, "--tasks", "-t", help="Tasks to score after training \\[default: advbench,smoke]."),
    ),
    ("judges", str | None, typer.Option(None, "--judges", "-j", help="Judges \\[default: keyword].")),
    ("limit", int | None, typer.Option(None, "--limit", "-n", min=1, help="Seeded subset of N prompts per task.")),
    (
        "subset_seed",
        int | None,
        typer.Option(
            None, "--subset-seed", help="Seeds which prompts --limit keeps, whatever the training seed \\[default: 0]."
        ),
    ),
    ("max_new_tokens", int | None, typer.Option(None, "--max-new-tokens", min=1, help="\\[default: 256]")),
    (
        "score_backend",
        str | None,
        typer.Option(None, "--score-backend", help="hf or vllm for scoring \\[default: hf]."),
    ),
    (
        "score_out",
        Path | None,
        typer.Option(None, "--score-out", help="Folder for results.json \\[default: RUN/score]."),
    ),
]
# train-and-score's flags as score settings, where their names differ
_SCORE_NAMES = {"score_backend": "backend", "score_out": "out"}


def _command(app: typer.Typer, name: str, help_text: str, flags: list):
    def decorate(fn):
        fn.__signature__ = inspect.Signature([inspect.Parameter(n, _O, default=d, annotation=t) for n, t, d in flags])
        return app.command(name, help=help_text)(fn)

    return decorate


def register(app: typer.Typer) -> None:
    @_command(app, "train", TRAIN_HELP, TRAIN_FLAGS)
    def train_command(**flags):
        quiet_libraries(ui.VERBOSE)
        if flags["list_all"]:
            _print_catalogue()
            return
        with ui.errors():
            _, record = _train(flags)
        if record:
            _print_record(record)

    @_command(app, "train-and-score", TRAIN_AND_SCORE_HELP, TRAIN_FLAGS + SCORE_FLAGS)
    def train_and_score_command(**flags):
        from ..train.evaluate import score_trained

        quiet_libraries(ui.VERBOSE)
        if flags["list_all"]:
            _print_catalogue()
            return
        with ui.errors():
            cfg, record = _train(flags)
            if not record:
                return  # not the main process of a distributed run
            _print_record(record)
            given = {_SCORE_NAMES.get(n, n): flags[n] for n, *_ in SCORE_FLAGS}
            result = score_trained(
                record,
                cfg,
                {**cfg.score, **{k: v for k, v in given.items() if v is not None}},
                ui.stage,
                ["safeeval", *sys.argv[1:]],
            )
        print_summary(result)


def _train(flags: dict):
    from ..train import load_config, train

    names = (
        "base",
        "task",
        "scenario",
        "poison",
        "poison_ratio",
        "method",
        "safety",
        "examples",
        "lora_r",
        "lora_alpha",
        "lora_targets",
        "seed",
        "steps",
        "epochs",
        "batch_size",
        "lr",
        "max_length",
        "save_steps",
        "out",
        "data_dir",
        "chat_template",
        "store",
    )
    overrides = {k: flags.get(k) for k in names}
    if flags["full"]:
        overrides["lora"] = False
    if flags["save_merged"]:
        overrides["save_merged"] = True
    if flags["option"]:
        overrides["method_options"] = _options(flags["option"])
    cfg = load_config(flags["config"], overrides)
    record = train(cfg, notify=ui.say, command=["safeeval", *sys.argv[1:]], reporter=ui.stage)
    return cfg, record


def _options(pairs: list[str]) -> dict:
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"'{pair}' is not KEY=VALUE, e.g. alpha=0.5", param_hint="--option")
        options[key.strip()] = yaml.safe_load(value)  # numbers and booleans as such
    return options


def _print_record(record: dict) -> None:
    t, mix = record["trainer"], record["data"]["mix"]
    losses = [h["loss"] for h in t["log_history"] if "loss" in h]
    loss = f", loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else ""
    ui.out_console.print(
        f"{record['method']['name']} on {record['config']['task']} ({record['scenario']}): "
        f"{t['steps']} steps in {t['train_seconds']:.0f} s{loss}; mix {mix['task']} task + {mix['poison']} poison + "
        f"{mix['safety']} safety rows. Saved: {record['output']['adapter'] or record['output']['model']}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


def _print_catalogue() -> None:
    from ..registry import load_train_sets
    from ..train.config import TrainConfig
    from ..train.methods import METHODS

    rows = [
        [name, ", ".join(f"{k}={v}" for k, v in cls.options.items()) or "-", cls.help]
        for name, cls in METHODS.all().items()
    ]
    ui.table("methods", [("method", "left"), ("options (defaults)", "left"), ("what it does", "left")], rows, "auto")
    rows = []
    for name, spec in sorted(load_train_sets().items()):
        purpose = f"{spec.purpose} (default)" if name == TrainConfig.poison else spec.purpose
        count = f"{spec.rows or '?'}, answered by {spec.generate['model']}" if spec.generate else str(spec.rows or "?")
        rows.append([name, purpose, count, spec.license or "-", ", ".join(spec.overlaps or []) or "-"])
    ui.table(
        "training sets",
        [("set", "left"), ("purpose", "left"), ("rows", "left"), ("licence", "left"), ("shares prompts with", "left")],
        rows,
        "auto",
    )
