"""Judges by kind; `make_judge` turns a judge spec into a ready judge."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SafeevalError
from ..generation import Reporter, silent
from ..registry import JUDGE_KEYS, Spec, marker_lists
from .base import Judge, Verdict
from .cached import judge_cached

__all__ = ["Judge", "JudgeRuntime", "Verdict", "judge_cached", "make_judge", "MODEL_KINDS"]

# kind -> (module, class) of the judges that ask a model; each is one small file in this folder.
MODEL_KINDS = {
    "harmbench-cls": ("safeeval.judging.harmbench_cls", "HarmBenchClassifier"),
    "llama-guard": ("safeeval.judging.llama_guard", "LlamaGuard"),
    "wildguard": ("safeeval.judging.wildguard", "WildGuard"),
    "rubric": ("safeeval.judging.rubric", "RubricJudge"),
    "strongreject": ("safeeval.judging.strongreject", "StrongRejectJudge"),
    "xstest-llm": ("safeeval.judging.refusal", "XSTestLLMJudge"),
}


@dataclass
class JudgeRuntime:
    """What model judges need from the run: the store their outputs are cached in, and backend choices."""

    store: object = None
    reporter: Reporter = silent
    backend: str | None = None  # overrides every model judge's spec backend
    models: dict[str, str] = field(default_factory=dict)  # judge name -> model, overriding the spec's
    options: dict = field(default_factory=dict)  # backend options: base_url, api_key_env, dtype, ...
    dirs: list[Path] = field(default_factory=list)


def make_judge(spec: Spec, variant: str | None, runtime: JudgeRuntime | None = None) -> Judge:
    runtime = runtime or JudgeRuntime()
    kind = spec.data["kind"]
    name = spec.name if variant is None else f"{spec.name}:{variant}"
    if kind == "keyword":
        return _keyword(spec, variant, name, runtime.dirs)
    if kind == "ensemble":
        return _ensemble(spec, name, runtime)
    if kind == "refusal":
        from .refusal import RefusalJudge

        return RefusalJudge(name, dict(spec.data))
    if kind in MODEL_KINDS:
        config = dict(spec.data)
        if variant is not None:
            variants = spec.data.get("variants") or {}
            if variant not in variants:
                raise SafeevalError(f"Judge {spec.name} has no variant '{variant}'. Valid variants: {', '.join(variants) or 'none'}.")
            unknown = set(variants[variant]) - JUDGE_KEYS
            if unknown:
                raise SafeevalError(f"Judge {spec.path} variant '{variant}' has unknown keys {sorted(unknown)}.")
            config.update(variants[variant])
        model = runtime.models.get(name) or runtime.models.get(spec.name) or config.get("model")
        if not model:
            raise SafeevalError(f"Judge {name} needs a model: set 'model' in {spec.path} or pass --judge-model {spec.name}=MODEL.")
        from ..backends import make_backend

        backend_name = runtime.backend or config.get("backend") or "hf"
        options = dict(runtime.options)
        if config.get("chat_template") and backend_name != "openai":
            options.setdefault("chat_template", config["chat_template"])
        backend = make_backend(backend_name, model, **options)
        module, cls_name = MODEL_KINDS[kind]
        return getattr(importlib.import_module(module), cls_name)(name, config, backend, runtime)
    known = ", ".join(["keyword", "ensemble", "refusal", *MODEL_KINDS])
    raise SafeevalError(f"Judge {spec.name} ({spec.path}) has kind '{kind}', which this safeeval cannot run. Known kinds: {known}.")


def _keyword(spec: Spec, variant: str | None, name: str, dirs: list[Path]) -> Judge:
    from .keyword import KeywordJudge

    markers = spec.data.get("markers", "llm-attacks")
    lists = marker_lists(list(dirs))
    if variant is not None or isinstance(markers, str):
        list_name = variant or markers
        if list_name not in lists:
            raise SafeevalError(f"Unknown refusal-marker list '{list_name}'. Valid lists: {', '.join(sorted(lists))}.")
        markers = lists[list_name]["markers"]
    else:
        list_name = f"inline:{spec.path.name}"
    return KeywordJudge(name, markers, list_name, spec.data.get("case_sensitive", True))


def _ensemble(spec: Spec, name: str, runtime: JudgeRuntime) -> Judge:
    from ..registry import load_judges, pick
    from .ensemble import RULES, EnsembleJudge

    rule = spec.data.get("rule", "majority")
    members = spec.data.get("members") or []
    if rule not in RULES or len(members) < 2:
        raise SafeevalError(f"Ensemble {spec.path} needs 'members' (two or more judges) and 'rule' in {', '.join(RULES)}.")
    if spec.name in {m.partition(":")[0] for m in members}:
        raise SafeevalError(f"Ensemble {spec.path} lists itself as a member.")
    chosen = pick(load_judges(runtime.dirs), members, "judge")
    return EnsembleJudge(name, [make_judge(s, v, runtime) for s, v in chosen], rule)
