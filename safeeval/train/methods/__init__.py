"""Continual-learning methods by name; each lives in one small file of this folder."""

from __future__ import annotations

import importlib
import pkgutil

from ...errors import SafeevalError
from .base import Method

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def make_method(name: str, options: dict | None = None) -> Method:
    _load_all()
    if name not in METHODS:
        raise SafeevalError(f"Unknown method '{name}'. Valid methods: {', '.join(sorted(METHODS))}.")
    return METHODS[name](**(options or {}))


def all_methods() -> dict[str, type[Method]]:
    _load_all()
    return dict(sorted(METHODS.items()))
