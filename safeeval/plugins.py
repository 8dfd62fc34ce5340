"""One registry mechanism for every kind of plug-in: backends, judge kinds, scorers and training methods.

Entries are lazy `module:attribute` strings, as in lm-eval's registry: nothing is imported until chosen
(vLLM alone takes seconds to import). A package outside safeeval adds its own through an entry-point group,
e.g. in its pyproject.toml:

    [project.entry-points."safeeval.backends"]
    mybackend = "mypackage.backend:MyBackend"
"""

from __future__ import annotations

import importlib
from importlib import metadata

from .errors import SafeevalError


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind  # "backend", "judge kind", "scorer", "method": how errors name an entry
        self.group = "safeeval." + kind.replace(" ", "_") + "s"  # the entry-point group outside packages use
        self._entries = dict(entries)
        self._loaded: dict[str, object] = {}
        self._plugins_read = False

    def _read_plugins(self) -> None:
        if not self._plugins_read:
            self._plugins_read = True
            for ep in metadata.entry_points(group=self.group):
                self._entries.setdefault(ep.name, ep.value)  # built-in names win: a plug-in cannot shadow one

    def names(self) -> list[str]:
        self._read_plugins()
        return list(self._entries)  # as registered: built-in ones in their documented order, then plug-ins

    def __contains__(self, name: str) -> bool:
        self._read_plugins()
        return name in self._entries

    def get(self, name: str):
        """The registered object, imported on first use; an unknown name is one sentence naming the valid ones."""
        if name not in self:
            raise SafeevalError(f"Unknown {self.kind} '{name}'. Valid {self.kind}s: {', '.join(self.names())}.")
        if name not in self._loaded:
            module, _, attr = self._entries[name].partition(":")
            try:
                self._loaded[name] = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise SafeevalError(
                    f"The {self.kind} '{name}' ({self._entries[name]}) cannot be loaded: {exc}."
                ) from None
        return self._loaded[name]

    def all(self) -> dict[str, object]:
        return {name: self.get(name) for name in self.names()}
