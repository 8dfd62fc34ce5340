"""Backends by name. Each is imported only when chosen: vLLM alone takes seconds to import."""

from __future__ import annotations

import importlib

from ..errors import SafeevalError
from .base import Backend, Chat, Completion, GenParams

__all__ = ["Backend", "Chat", "Completion", "GenParams", "BACKENDS", "make_backend"]

BACKENDS = {
    "hf": ("safeeval.backends.hf", "HFBackend"),
    "vllm": ("safeeval.backends.vllm", "VLLMBackend"),
    "openai": ("safeeval.backends.openai", "OpenAIBackend"),
}


def make_backend(name: str, model: str, **options) -> Backend:
    """Build a backend; local engines get a resolved model folder, endpoints get the model's name."""
    if name not in BACKENDS:
        raise SafeevalError(f"Unknown backend '{name}'. Valid backends: {', '.join(BACKENDS)}.")
    module, cls_name = BACKENDS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    if name == "openai":
        return cls(model, **options)
    from ..models import resolve_model

    return cls(resolve_model(model), **options)
