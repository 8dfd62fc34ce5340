"""Where safeeval keeps its own files, and how every file it writes is written (atomically)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def home() -> Path:
    """safeeval's own folder for caches and the default store (SAFEEVAL_HOME moves it)."""
    return Path(os.environ.get("SAFEEVAL_HOME") or Path.home() / ".cache" / "safeeval")


def store_path(given: str | Path | None = None) -> Path:
    """The run store: the one given, else SAFEEVAL_STORE, else the default under home()."""
    return Path(given or os.environ.get("SAFEEVAL_STORE") or home() / "store.sqlite")


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename it over `path`: a reader (or a resumed run) never sees half a
    file, whatever moment the writer is killed at."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json(path: Path, data, indent: int | None = 2) -> None:
    write_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, rows) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
