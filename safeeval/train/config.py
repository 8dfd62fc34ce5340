"""One training run's settings, from a YAML file and/or CLI flags; checked before any model is loaded."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import SafeevalError
from ..keys import digest


def task_label(task: str) -> str:
    """A training task as a run names it: a set's name, or a user's file by its stem (one folder, no path)."""
    return Path(task).stem if Path(task).suffix in (".jsonl", ".json") else str(task)


@dataclass
class TrainConfig:
    base: str  # the provider's aligned model: folder, .gguf, alias or Hub id
    task: str  # the user's data: a training set name (gsm8k, sst2, ...) or a .jsonl/.json file
    out: Path | None = None  # folder for checkpoints, the adapter or model, and training.json
    scenario: str = "benign"  # benign | poisoned
    poison: str = "hh-harmful"  # poison set name or file (poisoned scenario)
    poison_ratio: float = 0.1  # share of the user's upload that is poison
    method: str = "sft"
    method_options: dict = field(default_factory=dict)
    safety: str = "safety-llamas"  # safety data for replay / regularization methods: set name or file
    examples: int | None = None  # the fixed budget of training rows; default: every row of the task set
    lora: bool = True  # False: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"  # or a comma-separated list of module names
    save_merged: bool = False  # LoRA: also save the merged full model (to fine-tune it again later)
    seed: int = 0
    steps: int | None = None  # overrides epochs
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    lr_scheduler: str = "linear"
    warmup: float = 0.0  # below 1: a share of the steps; from 1: a number of steps
    weight_decay: float = 0.0
    max_length: int = 512
    save_steps: int = 50
    dtype: str = "auto"  # auto: bfloat16 for LoRA, float32 for full fine-tuning
    chat_template: str | None = None
    data_dir: Path | None = None
    tasks_dirs: list[Path] = field(default_factory=list)
    store: Path | None = None  # the run store GR-SAP's synthesis generates through (default: files.store_path())
    score: dict = field(default_factory=dict)  # train-and-score: tasks, judges, limit, max_new_tokens, backend, ...

    def identity(self, processes: int | None = None) -> dict:
        """What decides the trained weights; its hash names the run, so a changed setting is a new run. The number
        of processes splits the global batch (per-device batch x processes), so it is part of a multi-process
        run's identity; a single-process run's identity, and hash, stay as they were before it existed.
        processes: the number the run was (or will be) trained with; default: this launch's."""
        from .dist import world

        processes = world() if processes is None else processes
        skip = {"out", "data_dir", "tasks_dirs", "store", "score", "save_steps", "save_merged"}
        if self.scenario == "benign":  # no poison is read, so its settings (and their defaults) decide nothing
            skip |= {"poison", "poison_ratio"}
        found = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items() if k not in skip
        }
        return {**found, "world_size": processes} if processes > 1 else found

    @property
    def hash(self) -> str:
        return digest(self.identity())

    def is_run(self, record: dict) -> bool:
        """Whether a training.json records a run of these settings, with as many processes as it was trained on (a
        driver checking a step it launched on several processes is a single process itself)."""
        processes = int((record.get("trainer") or {}).get("world_size") or 1)
        return record.get("config_hash") == digest(self.identity(processes))

    def check(self) -> None:
        if self.scenario not in ("benign", "poisoned"):
            raise SafeevalError(f"Scenario must be 'benign' or 'poisoned', not '{self.scenario}'.")
        if not 0.0 <= self.poison_ratio <= 1.0:
            raise SafeevalError(f"The poison ratio must lie in [0, 1]; got {self.poison_ratio}.")
        for name in ("lora_r", "batch_size", "grad_accum", "max_length", "save_steps"):
            if getattr(self, name) < 1:
                raise SafeevalError(f"{name} must be at least 1; got {getattr(self, name)}.")
        if self.steps is not None and self.steps < 1:
            raise SafeevalError(f"steps must be at least 1; got {self.steps}.")
        if self.examples is not None and self.examples < 1:
            raise SafeevalError(f"examples must be at least 1; got {self.examples}.")
        if self.lr <= 0:
            raise SafeevalError(f"The learning rate must be positive; got {self.lr}.")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise SafeevalError(f"dtype must be auto, bfloat16, float16 or float32; got {self.dtype}.")


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def load_config(path: Path | None, overrides: dict) -> TrainConfig:
    """YAML keys are TrainConfig's field names; flags given on the command line win over the file."""
    values: dict = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SafeevalError(f"Cannot read training config {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise SafeevalError(f"Training config {path} must be a YAML mapping.")
        values.update(loaded)
    given = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(values.get("method_options"), dict) and "method_options" in given:  # flags add to the file's
        given["method_options"] = {**values["method_options"], **given["method_options"]}
    values.update(given)
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise SafeevalError(f"Unknown training setting(s) {unknown}; valid: {', '.join(sorted(_FIELDS))}.")
    for name in ("base", "task"):
        if not values.get(name):
            raise SafeevalError(f"No {name} given: set '{name}' in the config or pass --{name}.")
    for name in ("out", "data_dir", "store"):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    values["tasks_dirs"] = [Path(p) for p in values.get("tasks_dirs") or []]
    if not isinstance(values.get("method_options", {}), dict) or not isinstance(values.get("score", {}), dict):
        raise SafeevalError("method_options and score must be mappings.")
    try:
        cfg = TrainConfig(**values)
    except TypeError as exc:
        raise SafeevalError(f"Bad training config: {exc}") from None
    _coerce(cfg)
    cfg.check()
    return cfg


def _coerce(cfg: TrainConfig) -> None:
    """YAML reads '2e-4' as a string; numbers must be numbers before they meet torch."""
    for name, f in _FIELDS.items():
        value = getattr(cfg, name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        try:
            if value is not None and kind.startswith("float"):
                setattr(cfg, name, float(value))
            elif value is not None and kind.startswith("int") and not isinstance(value, bool):
                setattr(cfg, name, int(value))
        except (TypeError, ValueError):
            raise SafeevalError(f"{name} must be a number; got {value!r}.") from None
