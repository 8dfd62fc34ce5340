"""Judges by kind; `make_judge` turns a judge spec into a ready judge."""

from __future__ import annotations

from pathlib import Path

from ..errors import SafeevalError
from ..registry import Spec, marker_lists
from .base import Judge, Verdict

__all__ = ["Judge", "Verdict", "make_judge"]


def make_judge(spec: Spec, variant: str | None, extra_dirs: list[Path] = ()) -> Judge:
    kind = spec.data["kind"]
    if kind == "keyword":
        from .keyword import KeywordJudge

        markers = spec.data.get("markers", "llm-attacks")
        lists = marker_lists(list(extra_dirs))
        if variant is not None or isinstance(markers, str):
            list_name = variant or markers
            if list_name not in lists:
                raise SafeevalError(f"Unknown refusal-marker list '{list_name}'. Valid lists: {', '.join(sorted(lists))}.")
            markers = lists[list_name]["markers"]
        else:
            list_name = f"inline:{spec.path.name}"
        name = spec.name if variant is None else f"{spec.name}:{variant}"
        return KeywordJudge(name, markers, list_name, spec.data.get("case_sensitive", True))
    raise SafeevalError(f"Judge {spec.name} ({spec.path}) has kind '{kind}', which this safeeval cannot run. Known kinds: keyword.")
