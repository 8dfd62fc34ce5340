"""The settings of one scoring run, built one way from any source.

`ScoreConfig.from_settings` takes a mapping of settings (command-line flags, a sweep's `score` block, a trained
model's scoring, a finished run's recorded settings) whose keys are the field names below or the option names
of the chosen backend; a value of None means "not given", so every default lives once, on the dataclass.
`ScoreConfig.from_results` rebuilds the settings a finished run was scored with, to score another model the
same way (`safeeval check --candidate-model`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .backends import BACKENDS, GenParams, check_options, options_of
from .errors import SafeevalError
from .registry import name_list

# Settings that say where things are on this machine, not how the run is scored: never carried from one
# machine's results to another's config.
LOCAL = ("out", "store", "command", "training")
# Judge-backend settings given flat, as the command line gives them.
JUDGE_FLAGS = {"judge_base_url": "base_url", "judge_api_key_env": "api_key_env"}


@dataclass
class ScoreConfig:
    model: str
    tasks: list[str] = field(default_factory=lambda: ["smoke"])
    judges: list[str] = field(default_factory=lambda: ["keyword"])
    backend: str = "hf"
    limit: int | None = None
    seed: int = 0  # seeds sampling and bootstrap intervals
    subset_seed: int = 0  # which prompts --limit keeps: fixed per study, so every model is scored on the same ids
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    system_prompt: str | None = None
    out: Path | None = None
    store: Path | None = None
    data_dir: Path | None = None
    tasks_dirs: list[Path] = field(default_factory=list)
    judges_dirs: list[Path] = field(default_factory=list)
    backend_options: dict = field(default_factory=dict)  # the backend's own: adapter, dtype, batch_size, base_url...
    judge_batch: int = 512
    judge_backend: str | None = None  # for model judges; default: each judge spec's own
    judge_models: dict[str, str] = field(default_factory=dict)  # judge name -> model
    judge_options: dict = field(default_factory=dict)  # backend options for model judges
    perplexity_model: str | None = None  # a reference LM for the optional perplexity degeneration signal
    command: list[str] = field(default_factory=list)  # as typed, for the record; keys never travel in argv
    training: dict | None = None  # train-and-score: how the scored model was made (method, scenario, seed, ...)
    sandbox_allow: list[str] = field(default_factory=list)  # protections the code sandbox may lack (network, proc)

    def params(self) -> GenParams:
        return GenParams(self.max_new_tokens, self.temperature, self.top_p, self.seed)

    @classmethod
    def from_settings(cls, settings: dict) -> ScoreConfig:
        """Keys: field names, or option names of the chosen backend (adapter, dtype, batch_size...), or the flat
        judge_base_url / judge_api_key_env. None means not given. Unknown keys are an error naming the valid ones."""
        given = {k: v for k, v in settings.items() if v is not None}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        backend = given.get("backend", "hf")
        if backend not in BACKENDS:
            raise SafeevalError(f"Unknown backend '{backend}'. Valid backends: {', '.join(BACKENDS.names())}.")
        own = options_of(backend)
        others = set().union(*(options_of(b) for b in BACKENDS.names()))
        values, backend_options, judge_options = (
            {},
            dict(given.pop("backend_options", {})),
            dict(given.pop("judge_options", {})),
        )
        for name, value in given.items():
            if name in fields:
                values[name] = value
            elif name in JUDGE_FLAGS:
                judge_options[JUDGE_FLAGS[name]] = value
            elif name in own or name in others:
                backend_options[name] = value
            else:
                valid = sorted((set(fields) | own | set(JUDGE_FLAGS)) - set(LOCAL))
                raise SafeevalError(f"Unknown score setting '{name}'; valid: {', '.join(valid)}.")
        check_options(backend, backend_options)
        if "dtype" in backend_options:  # a local judge model runs in the dtype asked for the model under test
            judge_options.setdefault("dtype", backend_options["dtype"])
        values.update(backend_options=backend_options, judge_options=judge_options)
        if "model" not in values:
            raise SafeevalError("No model given: name the model to score.")
        for name in ("tasks", "judges"):
            if name in values:
                values[name] = name_list(values[name])
        for name in ("out", "store", "data_dir"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        for name in ("tasks_dirs", "judges_dirs"):
            values[name] = [Path(p) for p in values.get(name) or []]
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        if not self.tasks:
            raise SafeevalError("No tasks given; list them with `safeeval tasks`.")
        if not self.judges:
            raise SafeevalError("No judges given; list them with `safeeval judges`.")
        for name in ("limit", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SafeevalError(f"{name} must be at least 1; got {value}.")
        for folder in [*self.tasks_dirs, *self.judges_dirs]:
            if not Path(folder).is_dir():
                raise SafeevalError(f"Spec folder {folder} does not exist.")

    def settings(self) -> dict:
        """What results.json records: enough to score another model the same way on another machine."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in LOCAL:
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            elif isinstance(value, dict):  # an engine object code hands in (llm=) is not a setting to record
                value = {k: str(v) if isinstance(v, Path) else v for k, v in value.items() if _recordable(v)}
            out[f.name] = value
        return out

    @classmethod
    def from_results(cls, result, model: str, **given) -> ScoreConfig:
        """The settings `result` (a finished RunResult) was scored with, for another model; `given` (None = not
        given) overrides them, as flags do. Results written before settings were recorded are read from the fields
        they do hold."""
        recorded = dict(result.config) if result.config else _legacy_settings(result)
        settings = {**recorded, **{k: v for k, v in given.items() if v is not None}, "model": model}
        folders = [*(settings.get("tasks_dirs") or []), *(settings.get("judges_dirs") or [])]
        missing = [str(p) for p in folders if not Path(p).is_dir()]
        if missing:
            raise SafeevalError(
                f"The baseline was scored with spec folder(s) {', '.join(missing)}, which do not exist "
                "here; pass the same folders with --tasks-dir / --judges-dir."
            )
        return cls.from_settings(settings)


def _recordable(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, Path, list, dict))


def _legacy_settings(result) -> dict:
    """A results.json of schema 1.0 records no settings block: rebuild it from what it records."""
    gen = result.generation
    judges = {
        name: info.get("model")
        for name, info in result.judges.items()
        if info.get("model") and info.get("kind") not in ("keyword", "refusal", "ensemble")
    }
    return {
        "tasks": list(result.tasks),
        "judges": list(result.judges) or ["keyword"],
        "backend": result.model.backend,
        "limit": result.limit,
        "seed": result.seed,
        "subset_seed": result.seed,  # 1.0 drew --limit's subset with the run's seed
        "max_new_tokens": gen.get("max_new_tokens"),
        "temperature": gen.get("temperature"),
        "top_p": gen.get("top_p"),
        "system_prompt": gen.get("system_prompt"),
        "judge_models": judges,
    }
