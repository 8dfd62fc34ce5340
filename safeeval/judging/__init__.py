"""Judges by kind, through the one plug-in registry; `make_judge` turns a judge spec into a ready judge.

Every judge class builds itself from its spec with `from_spec(spec, variant, runtime)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SafeevalError
from ..plugins import Registry
from ..progress import Reporter, silent
from ..registry import Spec
from .base import Judge, Verdict
from .cached import judge_cached

__all__ = ["Judge", "JudgeRuntime", "Verdict", "judge_cached", "make_judge", "JUDGE_KINDS"]

# Each kind is one small file in this folder; the model judges share ModelJudge (model.py).
JUDGE_KINDS = Registry(
    "judge kind",
    {
        "keyword": "safeeval.judging.keyword:KeywordJudge",
        "refusal": "safeeval.judging.refusal:RefusalJudge",
        "ensemble": "safeeval.judging.ensemble:EnsembleJudge",
        "harmbench-cls": "safeeval.judging.harmbench_cls:HarmBenchClassifier",
        "llama-guard": "safeeval.judging.llama_guard:LlamaGuard",
        "wildguard": "safeeval.judging.wildguard:WildGuard",
        "rubric": "safeeval.judging.rubric:RubricJudge",
        "strongreject": "safeeval.judging.strongreject:StrongRejectJudge",
        "xstest-llm": "safeeval.judging.refusal:XSTestLLMJudge",
    },
)


@dataclass
class JudgeRuntime:
    """What judges need from the run: the store model judges cache their outputs in, and backend choices."""

    store: object = None
    reporter: Reporter = silent
    backend: str | None = None  # overrides every model judge's spec backend
    models: dict[str, str] = field(default_factory=dict)  # judge name -> model, overriding the spec's
    options: dict = field(default_factory=dict)  # backend options: base_url, api_key_env, dtype, ...
    dirs: list[Path] = field(default_factory=list)


def make_judge(spec: Spec, variant: str | None, runtime: JudgeRuntime | None = None) -> Judge:
    kind = spec.data["kind"]
    if kind not in JUDGE_KINDS:
        raise SafeevalError(
            f"Judge {spec.name} ({spec.path}) has kind '{kind}', which this safeeval cannot run. "
            f"Known kinds: {', '.join(JUDGE_KINDS.names())}."
        )
    return JUDGE_KINDS.get(kind).from_spec(spec, variant, runtime or JudgeRuntime())


def judge_name(spec: Spec, variant: str | None) -> str:
    """As selected: 'keyword' or 'keyword:harmbench-refusal'."""
    return spec.name if variant is None else f"{spec.name}:{variant}"
