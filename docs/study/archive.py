"""The study's finished steps, kept in git so a sitting on a fresh machine goes on where the last one stopped.

    python docs/study/archive.py save DATA_DIR      # after each step: each finished step not kept yet, to its grid
    python docs/study/archive.py restore DATA_DIR   # before one (run.sh does it): back into safeeval-runs/study/
    python docs/study/archive.py check DATA_DIR     # first of all (run.sh does it): can this machine go on at all?

A step is kept as its training.json, results.json and samples.jsonl (gzipped) without the text: prompts and a
row's own fields (a target, a context) are benchmark data (never copied here), and responses are not needed to
test anything. Each sample keeps its id, verdicts, scores and degeneration flags, so `safeeval compare` and the
leaderboard read a restored step as the one that was scored; the first `report.samples` rows of each task keep
their text, the rows report.html shows.

Weights are not kept: the aligned model is trained again (seeded: the same weights and fingerprint on a machine with
the same CPU; another CPU's bfloat16 kernels give other weights). So each aligned model the study has met keeps its
own grid, in its own folder (BASES: cells/ for sittings 1-8's CPU, other-cpu/ for sitting 9's), and this file works
on the one whose aligned model is the runs folder's. A step is restored only when the aligned model in the runs
folder is the one it was trained from and scored with, and when no step still to run needs its weights (a merge's
sft run), so the sweep never reads a step it cannot use; it never writes over a file the runs folder holds. The data
folder is one of the settings a step is checked against, so run.sh and this file name it by its absolute path
(/work/shared/data in every sitting so far); a kept step made with other settings is not restored.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import sys
from pathlib import Path

from safeeval.data import data_dir
from safeeval.errors import SafeevalError
from safeeval.keys import model_fingerprint
from safeeval.models import folder_fingerprint
from safeeval.sweep import finished, load_sweep, run_folder
from safeeval.train.sets import load_set

SWEEP = Path("configs/study.yaml")
CELLS = Path("docs/study/cells")  # the grid from b2 as sittings 1-8's CPU trains it (docs/study/README.md, section 7)
BASES = (CELLS, Path("docs/study/other-cpu"))  # ... and from b2', as sitting 9's CPU (AMX, AVX512-BF16) trains it
EMPTY = {"messages": [], "response": "", "meta": {}}  # the prompt, the answer, the benchmark row's own fields


def _files(spec: dict, step) -> dict[str, Path]:
    """Where the step's kept files live in the runs folder."""
    scored = run_folder(spec, step)
    files = {"results.json": scored / "results.json", "samples.jsonl": scored / "samples.jsonl"}
    if step.train is not None:
        files["training.json"] = Path(step.train.out) / "training.json"
    return files


def save(spec: dict, steps: list) -> None:
    aligned, model = _aligned(steps)
    if model is None:
        print("save: no aligned model in the runs folder yet; nothing kept")
        return
    cells = _base(aligned, model)
    if cells is None:  # cells of two aligned models would sit side by side in one leaderboard
        raise SafeevalError(
            "the aligned model in the runs folder is none of the kept grids' (" + ", ".join(map(str, BASES)) + "): "
            "a machine with yet another CPU trains and generates other bfloat16 numbers (docs/study/README.md, "
            "section 7); nothing kept"
        )
    keep = int((spec.get("report") or {}).get("samples") or 0)
    for step in steps:
        if step.kind == "shared-sft" or not finished(spec, step):
            continue
        dest = cells / step.name
        files = _files(spec, step)
        if all((dest / (n + ".gz" if n == "samples.jsonl" else n)).exists() for n in files):  # kept once: a resumed
            print(f"already kept {step.name}")  # sweep re-judges a finished step from its cache, rewriting its times
            continue  # and now-counts; the first record stays
        dest.mkdir(parents=True, exist_ok=True)
        for name, path in files.items():
            if name != "samples.jsonl":
                shutil.copyfile(path, dest / name)
                continue
            shown: dict[str, int] = {}
            packed = gzip.GzipFile(dest / "samples.jsonl.gz", "wb", mtime=0)  # same rows, same bytes: no churn in git
            with open(path, encoding="utf-8") as src, packed, io.TextIOWrapper(packed, encoding="utf-8") as out:
                for line in src:
                    row = json.loads(line)
                    shown[row["task"]] = shown.get(row["task"], 0) + 1
                    if shown[row["task"]] > keep:
                        row.update(EMPTY)
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"kept {step.name} in {cells}")


def _aligned(steps: list):
    """The sweep's align step and its model folder in the runs folder (None where not trained yet)."""
    aligned = next((s for s in steps if s.kind == "align"), None)
    model = Path(aligned.train.out) / "model" if aligned else None
    return aligned, model if model is not None and model.is_dir() else None


def _base(aligned, model: Path) -> Path | None:
    """The kept grid made from the runs folder's aligned model: the first with no aligned step kept yet (a grid's
    first sitting), or the one whose kept aligned step scored these very weights; None where neither."""
    for cells in BASES:
        if not (cells / aligned.name / "results.json").exists():
            return cells
        if _trained_from(cells / aligned.name, aligned, model) is not None:
            return cells
    return None


def restore(spec: dict, steps: list) -> None:
    aligned, model = _aligned(steps)
    if model is None:
        print("restore: no aligned model in the runs folder yet; nothing restored (train it, then restore).")
        return
    cells = _base(aligned, model) or BASES[0]  # none: every step below is reported as made from other weights
    now = folder_fingerprint(model)
    kept = {s.name for s in steps if (cells / s.name / "results.json").exists()}
    needed = {name for s in steps if s.name not in kept for name in s.after}  # weights a step still to run reads
    other = 0
    for step in steps:
        src = cells / step.name
        if step.name not in kept or finished(spec, step):
            continue
        if step.kind == "finetune" and step.name in needed:
            print(f"not restored: {step.name} (a step still to run reads its weights, so it runs again)")
            continue
        if _trained_from(src, step, model) != now:
            print(f"not restored: {step.name} (made from other aligned weights than the ones here)")
            other += 1
            continue
        files = _files(spec, step)
        if files["results.json"].exists():
            print(f"not restored: {step.name} (the runs folder holds its own scores; the sweep decides)")
            continue
        written = []  # a training.json already here (the aligned model's, a trained cell's) is the one to keep
        for name, path in files.items():
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if name == "samples.jsonl":
                with gzip.open(src / "samples.jsonl.gz", "rt", encoding="utf-8") as f:
                    path.write_text(f.read(), encoding="utf-8")
            else:
                shutil.copyfile(src / name, path)
            written.append(path)
        if not finished(spec, step):  # scored or trained with other settings than the sweep's now
            for path in written:
                path.unlink()
            print(f"not restored: {step.name} (made with other settings than configs/study.yaml's now)")
            continue
        print(f"restored {step.name} from {cells}")
    if other:
        print(
            f"{other} kept steps were made from other aligned weights: the aligned model trained here is none of the "
            "kept grids', as on a machine with yet another CPU (docs/study/README.md, section 7); `archive.py save` "
            "keeps nothing here"
        )


def check(spec: dict, steps: list) -> None:
    """Stop where this machine builds the aligned model's training data otherwise than every kept grid's alignment
    run did: on yet another CPU the generated part (bfloat16 answers) differs, b2 trains into other weights and no
    kept step is reused (README.md, section 7). Building the set takes minutes and is cached for the training: 40
    fewer wasted."""
    aligned, _ = _aligned(steps)
    made = {c: c / aligned.name / "training.json" for c in BASES} if aligned else {}
    made = {c: json.loads(f.read_text())["data"]["task"]["source"] for c, f in made.items() if f.exists()}
    if not made:
        return
    cfg = aligned.train
    built = load_set(cfg.task, "task", data_dir(cfg.data_dir), cfg.tasks_dirs).source
    sha = re.compile(r"sha256:([0-9a-f]+)")
    same = [c for c, source in made.items() if sha.findall(source) == sha.findall(built)]
    if not same:
        raise SafeevalError(
            f"this machine builds other training data for the aligned model ({built}) than every kept grid's run did "
            f"({'; '.join(f'{c}: {s}' for c, s in made.items())}): on this CPU it would train other weights, and no "
            "kept step could be reused (docs/study/README.md, section 7). Go on on a CPU like one of theirs, or run "
            "the grid anew from this CPU's own aligned model with ANY_CPU=1 (its steps are then not kept: save "
            "refuses them)"
        )
    print(f"check: the aligned model's training data here is the one {same[0]}'s grid was made from ({cfg.task})")


def _trained_from(src: Path, step, model: Path) -> str | None:
    """The aligned weights a kept step was made from: a cell's training base; the aligned model's own scores
    hold the fingerprint of the weights they scored (merged, no adapter), recomputed here from the folder."""
    if step.kind == "finetune":
        return (json.loads((src / "training.json").read_text()).get("base_model") or {}).get("fingerprint")
    info = json.loads((src / "results.json").read_text())["model"]
    here = model_fingerprint(folder_fingerprint(model), "", info.get("dtype") or "")
    return folder_fingerprint(model) if info.get("fingerprint") == here else None


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("save", "restore", "check"):
        sys.exit(__doc__)
    try:
        spec, steps = load_sweep(SWEEP, Path(sys.argv[2]).resolve())  # as run.sh passes it: the settings name it
        {"save": save, "restore": restore, "check": check}[sys.argv[1]](spec, steps)
    except (SafeevalError, OSError, ValueError, KeyError) as exc:  # a bad sweep, a missing or broken kept file
        sys.exit(f"archive.py {sys.argv[1]}: {exc}")
