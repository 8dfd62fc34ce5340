"""The lm-eval bridge: any lm-evaluation-harness *generative* task runs as `lmeval:<task>`.

`lmeval:gsm8k` (or `lmeval:gsm8k:5shot` for few-shot context) becomes a safeeval utility task:

* the task comes from lm-eval's own TaskManager (its built-in tasks, plus task YAMLs in the folders
  of `SAFEEVAL_LMEVAL_TASKS` (os.pathsep-separated) and in `<data-dir>/lmeval/` when it exists);
* each eval doc (the task's test split, else its validation split) becomes one sample whose user message
  is lm-eval's own plain-text context for that doc: `fewshot_context(doc, num_fewshot)`, i.e. the task
  description, the few-shot examples (lm-eval's sampler, seeded as lm-eval seeds it: 1234) and
  `doc_to_text(doc)`. safeeval sends it as one user turn through the model's chat template, which is
  what `lm_eval --apply_chat_template --fewshot_as_multiturn False` sends, except that lm-eval would put
  a task description in a system turn; here it stays at the top of the user turn;
* scoring (safeeval.scoring.lmeval) cuts each answer at the task's stop sequences, runs the task's own
  filters and `process_results`, and aggregates with the task's own aggregations.

Tasks scored from log-likelihoods (loglikelihood, multiple_choice, loglikelihood_rolling) cannot run:
safeeval's backends return text.

lm-eval is imported lazily: `safeeval` itself starts without it.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .data import Loaded, Sample
from .errors import SafeevalError
from .keys import digest
from .registry import Spec

PREFIX = "lmeval:"
FEWSHOT_SEED = 1234  # lm-eval's default --fewshot_random_seed (lm_eval.defaults.DEFAULT_OTHER_SEED)
LOGLIKELIHOOD_TYPES = ("loglikelihood", "multiple_choice", "loglikelihood_rolling")
_SHOTS = re.compile(r"^(\d+)shot$")


def is_lmeval(name: str) -> bool:
    """True for a task name the bridge resolves (`lmeval:<task>`), not the YAML registry."""
    return name.strip().startswith(PREFIX)


def parse_name(name: str) -> tuple[str, int]:
    """'lmeval:gsm8k' -> ('gsm8k', 0); 'lmeval:gsm8k:5shot' -> ('gsm8k', 5). The prefix is optional."""
    name = name.strip().removeprefix(PREFIX)
    task, shots = name, 0
    base, sep, last = name.rpartition(":")
    if sep and _SHOTS.match(last.strip()):
        task, shots = base, int(_SHOTS.match(last.strip()).group(1))
    task = task.strip()
    if not task:
        raise SafeevalError("Task 'lmeval:' names no lm-eval task; write lmeval:<task>, e.g. lmeval:gsm8k.")
    return task, shots


def include_paths(data_dir: Path | None = None, extra: list[str | Path] | None = None) -> list[str]:
    """Folders of user task YAMLs lm-eval indexes besides its own: given, SAFEEVAL_LMEVAL_TASKS, <data-dir>/lmeval."""
    paths = [str(Path(p).expanduser().resolve()) for p in (extra or [])]
    env = os.environ.get("SAFEEVAL_LMEVAL_TASKS")
    if env:
        paths += [str(Path(p).expanduser().resolve()) for p in env.split(os.pathsep) if p]
    if data_dir is not None and (Path(data_dir) / "lmeval").is_dir():
        paths.append(str((Path(data_dir) / "lmeval").resolve()))
    for p in paths:
        if not Path(p).is_dir():
            raise SafeevalError(
                f"lm-eval task folder {p} does not exist (from SAFEEVAL_LMEVAL_TASKS or an include path)."
            )
    return list(dict.fromkeys(paths))


def loglikelihood_error(task: str, output_type: str) -> SafeevalError:
    return SafeevalError(
        f"lm-eval task {task} needs log-likelihoods (output_type {output_type}): safeeval's backends generate text; "
        f"run it with lm-eval itself (hf or vllm model), or pick a generative task (safeeval's hf and vllm backends "
        f"could score it in future, as both expose logits; OpenAI-compatible endpoints generally don't)."
    )


@dataclass
class Bridge:
    """One lm-eval task, built once per process and shared by the loader and the scorer."""

    name: str
    task: object  # lm_eval.api.task.Task
    config_hash: str  # of the task's config as lm-eval defines it: part of the spec's and the scorer's identity
    yaml_path: str | None
    include_path: tuple[str, ...]
    split: str
    docs: list

    @property
    def until(self) -> list[str]:
        kwargs = getattr(self.task.config, "generation_kwargs", None) or {}
        until = kwargs.get("until") or []
        return [until] if isinstance(until, str) else list(until)

    def render(self, num_fewshot: int) -> list[str]:
        """lm-eval's plain-text context for every eval doc, in order, as lm-eval's evaluator builds it.

        The few-shot sampler is reseeded first and walks the docs in order, as lm-eval does, so a doc's
        examples are those of a full lm-eval run whatever subset safeeval later keeps."""
        task = self.task
        if num_fewshot > 0 and not hasattr(task, "sampler"):
            raise SafeevalError(
                f"lm-eval task {self.name} has no few-shot examples to draw from; use lmeval:{self.name} (0-shot)."
            )
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
        return [task.fewshot_context(doc=doc, num_fewshot=num_fewshot) for doc in self.docs]


_BRIDGES: dict[tuple, Bridge] = {}
_MANAGERS: dict[tuple, object] = {}


def _manager(include: tuple[str, ...]):
    if include not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _MANAGERS[include] = TaskManager(include_path=list(include) or None)
    return _MANAGERS[include]


def _entry_kind_and_cfg(entry) -> tuple[str, dict]:
    """lm-eval >= 0.4.10 indexes Entry objects; earlier versions plain dicts."""
    if isinstance(entry, dict):
        return str(entry.get("type", "task")), {}
    kind = getattr(getattr(entry, "kind", None), "name", "TASK").lower()
    return kind, dict(getattr(entry, "cfg", None) or {})


def _stable(obj):
    """json default: callables by their source (as lm-eval's own config dump does), anything else by str."""
    if callable(obj):
        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            return getattr(obj, "__qualname__", type(obj).__name__)
    return str(obj)


def config_hash(task) -> str:
    cfg = task.config.to_dict()
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, ensure_ascii=False, default=_stable).encode()).hexdigest()[
        :16
    ]


def bridge(task_name: str, include_path: tuple[str, ...] = ()) -> Bridge:
    """Build (once per process) the lm-eval task, refusing what safeeval cannot run with one clear sentence."""
    key = (task_name, tuple(include_path))
    if key in _BRIDGES:
        return _BRIDGES[key]
    tm = _manager(tuple(include_path))
    index = tm.task_index
    if task_name not in index:
        close = difflib.get_close_matches(task_name, list(index), n=3)
        hint = f" Close matches: {', '.join('lmeval:' + c for c in close)}." if close else ""
        raise SafeevalError(
            f"Unknown lm-eval task '{task_name}'.{hint} List lm-eval's tasks with `lm-eval ls tasks`; "
            f"put your own task YAMLs in a folder named by SAFEEVAL_LMEVAL_TASKS or in <data-dir>/lmeval/."
        )
    kind, cfg = _entry_kind_and_cfg(index[task_name])
    if kind in ("group", "tag"):
        raise SafeevalError(
            f"lm-eval name '{task_name}' is a {kind} of several tasks; name its tasks one by one, "
            f"e.g. lmeval:<task>,lmeval:<task> (`lm-eval ls tasks` lists them)."
        )
    if cfg.get("output_type") in LOGLIKELIHOOD_TYPES:  # refuse before any dataset is downloaded
        raise loglikelihood_error(task_name, cfg["output_type"])
    try:
        built = tm.load([task_name])["tasks"] if hasattr(tm, "load") else _legacy_load(tm, task_name)
    except SafeevalError:
        raise
    except Exception as exc:  # no dataset offline, a gated dataset, a broken YAML: one sentence
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SafeevalError(
            f"lm-eval task {task_name} could not be built ({type(exc).__name__}: {text}); lm-eval reads its "
            f"data through Hugging Face datasets, so check network access or HF_TOKEN, or point a "
            f"local task YAML at a local copy."
        ) from None
    task = built.get(task_name) or next(iter(built.values()))
    _check_runnable(task_name, task)
    split = task.config.test_split if task.has_test_docs() else task.config.validation_split
    hash_ = config_hash(task)  # before anything touches the task
    yaml_path = (
        getattr(index[task_name], "yaml_path", None)
        if not isinstance(index[task_name], dict)
        else index[task_name].get("yaml_path")
    )
    _BRIDGES[key] = Bridge(
        task_name, task, hash_, str(yaml_path) if yaml_path else None, tuple(include_path), split, list(task.eval_docs)
    )
    return _BRIDGES[key]


def _legacy_load(tm, task_name: str) -> dict:
    from lm_eval.tasks import get_task_dict

    return {k: v for k, v in get_task_dict([task_name], tm).items() if not isinstance(v, dict)}


def _check_runnable(task_name: str, task) -> None:
    output_type = getattr(task, "OUTPUT_TYPE", None) or task.config.output_type
    if output_type in LOGLIKELIHOOD_TYPES:
        raise loglikelihood_error(task_name, output_type)
    if output_type != "generate_until":
        raise SafeevalError(
            f"lm-eval task {task_name} has output_type {output_type}; the bridge runs generate_until tasks only."
        )
    if getattr(task, "MULTIMODAL", False):
        raise SafeevalError(f"lm-eval task {task_name} needs images or audio; safeeval's backends take text only.")
    if getattr(task, "UNSAFE_CODE", False):
        raise SafeevalError(
            f"lm-eval task {task_name} executes model-written code (lm-eval's unsafe_code); run it with "
            f"lm-eval itself and --confirm_run_unsafe_code, or use safeeval's own humaneval task."
        )
    if (task.config.repeats or 1) > 1:
        raise SafeevalError(
            f"lm-eval task {task_name} needs {task.config.repeats} answers per prompt (repeats); safeeval "
            f"generates one, so pick the task's single-answer variant."
        )
    docs = task.eval_docs
    prefix = task.doc_to_prefix(docs[0]) if len(docs) and hasattr(task, "doc_to_prefix") else None
    if prefix:
        raise SafeevalError(
            f"lm-eval task {task_name} starts the model's answer with gen_prefix {prefix!r}, which a chat "
            f"request cannot prefill; pick a task without gen_prefix."
        )


def jsonable(obj):
    """Docs, targets and per-sample metric values in a form JSON (the store, samples.jsonl) keeps."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(jsonable(v) for v in obj)
    if obj is None or type(obj) in (str, bool, int, float):
        return obj
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalars (np.float64 is a float) and arrays
        return jsonable(obj.tolist())
    for plain in (bool, int, float, str):
        if isinstance(obj, plain):
            return plain(obj)
    return str(obj)


def load_lmeval_task(
    name: str,
    data_dir: Path | None = None,
    include_path: list[str | Path] | None = None,
    num_fewshot: int | None = None,
) -> tuple[Spec, Loaded]:
    """`lmeval:<task>[:<n>shot]` -> a utility Spec scored by the `lmeval` scorer, and its samples.

    The samples are every eval doc in lm-eval's order (run.prepare subsamples afterwards); `Loaded.split` is
    None so the run's label is the name as typed; the split is in `source` and in the spec."""
    import lm_eval

    task_name, shots = parse_name(name)
    if num_fewshot is not None:
        shots = num_fewshot
    include = tuple(include_paths(data_dir, include_path))
    b = bridge(task_name, include)
    label = PREFIX + task_name + (f":{shots}shot" if shots else "")
    samples = _samples(b, task_name, label, shots)
    cfg = b.task.config
    dataset = str(cfg.dataset_path or "a custom dataset") + (f"/{cfg.dataset_name}" if cfg.dataset_name else "")
    data = _spec_data(b, task_name, label, shots, include, dataset, lm_eval.__version__)
    data["rows"] = len(samples)
    spec_hash = digest(data, ascii=False)
    spec = Spec(label, Path(b.yaml_path) if b.yaml_path else Path(label), data, spec_hash)
    source = (
        f"lm-eval:{task_name} {b.split} split of {dataset} (task config {b.config_hash}, lm-eval {lm_eval.__version__})"
    )
    return spec, Loaded(samples, source, None)


def _samples(b: Bridge, task_name: str, label: str, shots: int) -> list[Sample]:
    """One Sample per eval doc, its prompt lm-eval's own rendering; a non-text rendering is refused."""
    samples = []
    width = len(str(max(len(b.docs) - 1, 0)))
    for doc_id, (doc, prompt) in enumerate(zip(b.docs, b.render(shots))):
        if not isinstance(prompt, str):
            raise SafeevalError(
                f"lm-eval task {task_name} renders a doc as {type(prompt).__name__}, not text; the bridge runs "
                "single-prompt tasks only."
            )
        target = b.task.doc_to_target(doc)
        samples.append(
            Sample(
                task=label,
                id=f"{task_name}-{doc_id:0{width}d}",
                prompt=prompt,
                harmful=False,
                meta={"doc_id": doc_id, "doc": jsonable(doc)},
                target=target if isinstance(target, str) else json.dumps(jsonable(target), ensure_ascii=False),
            )
        )
    return samples


def _spec_data(
    b: Bridge, task_name: str, label: str, shots: int, include: tuple[str, ...], dataset: str, version: str
) -> dict:
    """The spec's data (without `rows`): what the `lmeval` scorer needs and what the run records."""
    return {
        "name": label,
        "description": f"lm-eval task {task_name} ({shots}-shot), scored by lm-eval's own filters and metrics",
        "kind": "utility",
        "scorer": "lmeval",
        "scorer_options": {
            "task": task_name,
            "include_path": list(include),
            "config_hash": b.config_hash,
            "lm_eval": version,
        },
        "lmeval": {
            "task": task_name,
            "num_fewshot": shots,
            "fewshot_seed": FEWSHOT_SEED,
            "split": b.split,
            "dataset": dataset,
            "yaml": b.yaml_path,
            "version": jsonable(getattr(b.task, "VERSION", None)),
            "generation_kwargs": jsonable(b.task.config.generation_kwargs),
            "config_hash": b.config_hash,
            "lm_eval": version,
            "prompt_format": "lm-eval plain-text context as one user turn",
        },
    }
