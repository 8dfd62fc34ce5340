"""Backends by name, through the one plug-in registry. Each is imported only when chosen.

A backend class declares its `capabilities` (what callers may ask of it) and takes its options as keyword
arguments; callers ask about capabilities and options, never about a backend's name.
"""

from __future__ import annotations

import inspect

from ..errors import SafeevalError
from ..plugins import Registry
from .base import CAPABILITIES, Backend, Chat, Completion, GenParams

__all__ = [
    "Backend",
    "Chat",
    "Completion",
    "GenParams",
    "BACKENDS",
    "CAPABILITIES",
    "make_backend",
    "options_of",
    "capabilities_of",
]

BACKENDS = Registry(
    "backend",
    {
        "hf": "safeeval.backends.hf:HFBackend",
        "vllm": "safeeval.backends.vllm:VLLMBackend",
        "openai": "safeeval.backends.openai:OpenAIBackend",
    },
)


def capabilities_of(name: str) -> frozenset[str]:
    return BACKENDS.get(name).capabilities


def options_of(name: str) -> set[str]:
    """The keyword options a backend's constructor takes."""
    params = inspect.signature(BACKENDS.get(name).__init__).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_options(name: str, options: dict) -> None:
    """Options the user set that this backend cannot use are an error, not silently dropped."""
    unusable = sorted(k for k, v in options.items() if v is not None and k not in options_of(name))
    if unusable:
        raise SafeevalError(
            f"The {name} backend does not take {', '.join(unusable)}; it takes {', '.join(sorted(options_of(name)))}."
        )


def make_backend(name: str, model: str, **options) -> Backend:
    """Build a backend from the options it takes (others, shared with other backends, are left out). A local
    engine gets a resolved model folder; a remote one the model's name on its endpoint."""
    cls = BACKENDS.get(name)
    accepted = options_of(name)
    given = {k: v for k, v in options.items() if v is not None and k in accepted}
    if "remote" in cls.capabilities:
        return cls(model, **given)
    from ..models import resolve_model

    return cls(resolve_model(model), **given)
