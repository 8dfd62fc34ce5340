"""Training sets as a run reads them: from their files (data.py), answered by a model first where the spec says
`generate` (poison.py: the default poison is harmful requests answered by an unaligned model, built once, cached),
and `a+b` for the rows of several sets together (an alignment mix of benign instructions and look-alikes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .data import TrainSet, _unique, read_set
from .poison import build


def parts_of(name: str) -> list[str]:
    """`a+b` names the sets a and b, trained on as one; a file's path is one set whatever its name holds."""
    if "+" in name and not Path(name).expanduser().exists():
        return [part.strip() for part in name.split("+")]
    return [name]


def load_set(
    name: str, role: str, root: Path | None, dirs: list[Path] = (), notify: Callable[[str], None] = lambda text: None
) -> TrainSet:
    parts = parts_of(name)
    if len(parts) > 1:
        sets = [load_set(part, role, root, dirs, notify) for part in parts]
        examples = [ex for got in sets for ex in got.examples]
        _unique(examples, f"Training sets {name}")
        return TrainSet(
            name,
            examples,
            " + ".join(got.source for got in sets),
            "; ".join(dict.fromkeys(got.license for got in sets if got.license)) or None,
            sum(got.unusable for got in sets),
        )
    got = read_set(name, role, root, dirs)
    if got.spec is not None and got.spec.generate:
        return build(got.spec, got.examples, got.source, root, list(dirs), notify)
    return got
