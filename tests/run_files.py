"""Run folders as a user's disk holds them: results.json and samples.jsonl written from plain dicts, so reports
and the gate are tested on files, exactly as they read them."""

from __future__ import annotations

import json
from pathlib import Path


def write_run(folder: Path, results: dict, rows: list[dict]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
