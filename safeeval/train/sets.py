"""Training sets as a run reads them: from their files (data.py), answered by a model first where the spec says
`generate` (poison.py: the default poison is harmful requests answered by an unaligned model, built once, cached)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .data import TrainSet, read_set
from .poison import build


def load_set(
    name: str, role: str, root: Path | None, dirs: list[Path] = (), notify: Callable[[str], None] = lambda text: None
) -> TrainSet:
    got = read_set(name, role, root, dirs)
    if got.spec is not None and got.spec.generate:
        return build(got.spec, got.examples, got.source, root, list(dirs), notify)
    return got
