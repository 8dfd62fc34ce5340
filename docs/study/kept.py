"""Kept cells (archive.py's form: results.json and samples.jsonl.gz) read back as runs, and compared as `safeeval
compare` compares them (the same function, so the same figures): what replicate.py and analyse.py share."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from safeeval.report.compare import compare
from safeeval.report.runs import Run, load_run

HERE = Path(__file__).parent
METRICS = [  # (task, metric, label): the rows of every table the write-up prints
    ("sst2", "accuracy", "SST-2 dev accuracy"),
    ("advbench", "asr", "AdvBench ASR"),
    ("harmbench:test", "asr", "HarmBench test ASR"),
    ("directharm4", "asr", "DirectHarm4 ASR"),
    ("xstest", "asr", "XSTest unsafe complied"),
    ("xstest", "benign_refusal_rate", "XSTest safe refused"),
    ("benign-selfinstruct", "benign_refusal_rate", "Self-Instruct refused"),
]


def load(folder: Path, cells: list[str], tmp: Path) -> list[Run]:
    """The kept cells, unpacked under tmp as the run folders they were kept from (compare needs the samples)."""
    runs = []
    for cell in cells:
        run = tmp / folder.name / cell
        if not run.exists():
            run.mkdir(parents=True)
            shutil.copyfile(folder / cell / "results.json", run / "results.json")
            with gzip.open(folder / cell / "samples.jsonl.gz", "rb") as src, open(run / "samples.jsonl", "wb") as out:
                shutil.copyfileobj(src, out)
        runs.append(load_run(run))
    return runs


def differences(runs: list[Run], against: str, **options) -> dict[tuple[str, str, str, str, str], dict]:
    """Each method against `against` (compare's options: margins, equivalence, tasks), keyed (scenario, task,
    judge, metric, method); each value is compare's JSON of one difference, with its Holm family's statement."""
    return {
        (c.stratum.split(" · ")[1], c.task, c.evaluator, c.key, d["method"]): {**d, "family": c.family.statement}
        for c in compare(runs, against, **options)
        for d in c.to_dict()["differences"]
    }
