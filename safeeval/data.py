"""Turns a task spec into validated samples; the only module that knows file formats."""

from __future__ import annotations

import csv
import functools
import glob
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from .errors import SafeevalError
from .registry import Spec

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_JINJA.filters["regex_replace"] = lambda text, pattern, repl="": re.sub(pattern, repl, str(text))


@dataclass
class Sample:
    task: str
    id: str
    prompt: str  # the user message
    category: str | None = None
    harmful: bool = True  # False for benign look-alikes, whose refusal rate is reported instead of ASR
    meta: dict = field(default_factory=dict)
    needs_judge: str | None = None  # a judge this sample must have; others report it as not judged
    target: str | None = None  # the reference answer of a utility task


@dataclass
class Loaded:
    samples: list[Sample]
    source: str  # where the rows came from: a local path with its sha256, a Hub id, or "inline"
    split: str | None


def data_dir(option: str | Path | None) -> Path | None:
    value = option or os.environ.get("SAFEEVAL_DATA_DIR")
    return Path(value).expanduser() if value else None


def load(spec: Spec, split: str | None, data_root: Path | None) -> Loaded:
    split = _check_split(spec, split)
    if spec.inline:
        rows, source = [(i + 1, r) for i, r in enumerate(spec.inline)], f"inline:{spec.path.name}"
    else:
        rows, source = _rows(spec, split, data_root)
    if spec.fewshot:  # worked examples for the prompt template, as `fewshot`
        shots, shot_source = _fewshot(spec, split, data_root)
        rows, source = [(line, {**row, "fewshot": shots}) for line, row in rows], f"{source} fewshot:{shot_source}"
    samples = [_sample(spec, split, i, line, row, source) for i, (line, row) in enumerate(rows)]
    seen = set()
    for s in samples:
        if s.id in seen:
            raise SafeevalError(f"Task {spec.name}: sample id '{s.id}' appears twice in {source}.")
        seen.add(s.id)
    return Loaded(samples, source, split)


def _check_split(spec: Spec, split: str | None) -> str | None:
    splits = spec.splits or []
    if split is None:
        return spec.default_split
    if split not in splits:
        valid = ", ".join(splits) if splits else "none (this task has one split)"
        raise SafeevalError(f"Task {spec.name} has no split '{split}'. Valid splits: {valid}.")
    return split


def _rows(spec: Spec, split: str | None, root: Path | None) -> tuple[list[tuple[int, dict]], str]:
    local = spec.local or {}
    looked = None
    if root is not None and local:
        pattern = str(root / local["path"].format(split=split))
        paths = sorted(glob.glob(pattern))
        if paths:
            rows = []
            for path in paths:
                rows += _read_file(Path(path), local, spec)
            digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in paths)).hexdigest()[:16]
            return rows, f"local:{pattern} sha256:{digest}"
        looked = pattern
    if spec.hub and spec.hub.get("files"):
        return _hub_files(spec, split, looked), f"hub:{spec.hub['dataset']}"
    if spec.hub:
        return _hub_rows(spec, split, looked), f"hub:{spec.hub['dataset']}"
    raise SafeevalError(_missing_message(spec, looked, None))


def read_rows(spec: Spec, split: str | None, root: Path | None) -> tuple[list[tuple[int, dict]], str]:
    """The raw rows of any spec with `local`/`hub` (a task, a label set), as (line, row) pairs, and their source."""
    return _rows(spec, split, root)


def render(template: str, row: dict, where: str) -> str:
    """A spec's Jinja template over one row; a missing field is an error that says where."""
    return _render(template, row, where)


def _missing_message(spec: Spec, looked: str | None, hub_error: str | None) -> str:
    parts = [f"No data for {'label set' if spec.scheme else 'task'} '{spec.name}'."]
    if looked:
        parts.append(f"Looked for a local copy at {looked}.")
    elif spec.local:
        parts.append(f"For a local copy, set --data-dir or SAFEEVAL_DATA_DIR to a folder holding {spec.local['path']}.")
    if hub_error:
        parts.append(f"The Hub copy {spec.hub['dataset']} could not be loaded: {hub_error}.")
    if spec.access:
        parts.append(spec.access.strip())
    return " ".join(parts)


def _fewshot(spec: Spec, split: str | None, root: Path | None) -> tuple[list[dict], str]:
    """`fewshot: {local: ..., hub: ..., n: 5, seed: 0}`: n rows of another file (a train split), drawn by a
    seeded hash of their position, so every run and every sample gets the same examples."""
    shot = spec.fewshot
    rows, source = _rows(Spec(spec.name, spec.path, {"local": shot.get("local"), "hub": shot.get("hub")}), split, root)
    seed = shot.get("seed", 0)
    ranked = sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"{seed}|{i}".encode()).hexdigest())
    return [rows[i][1] for i in ranked[: int(shot["n"])]], source


def _read_tar(path: Path, fmt: dict) -> list[tuple[int, dict]]:
    """A tarball of JSON files, one problem each (the MATH release): members matching `member`, in name
    order; `_member` is the path inside the tarball, `_file` its stem."""
    import fnmatch
    import tarfile

    rows = []
    with tarfile.open(path) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, fmt.get("member", "*.json"))),
                         key=lambda m: m.name)
        for m in members:
            data = json.load(tar.extractfile(m))
            for r in data if isinstance(data, list) else [data]:
                rows.append((len(rows) + 1, {**r, "_file": Path(m.name).stem, "_member": m.name}))
    return rows


def _read_file(path: Path, fmt: dict, spec: Spec) -> list[tuple[int, dict]]:
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _read_tar(path, fmt)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    kind = fmt.get("format") or name.rsplit(".", 1)[-1]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        if kind in ("csv", "tsv"):
            names = fmt.get("header_names")  # for files without a header row
            quoting = csv.QUOTE_NONE if fmt.get("quoting") == "none" else csv.QUOTE_MINIMAL  # GLUE's TSVs
            reader = csv.DictReader(f, fieldnames=names, delimiter="\t" if kind == "tsv" else ",", quoting=quoting)
            rows = []
            for row in reader:
                rows.append((reader.line_num, {**row, "_file": path.stem}))
            return rows
        if kind == "jsonl":
            return [(i + 1, {**json.loads(line), "_file": path.stem}) for i, line in enumerate(f) if line.strip()]
        if kind == "json":
            data = json.load(f)
            if isinstance(data, dict):  # {key: [rows]} (HarmBench's classifier sets): each row keeps its key
                data = [{**r, "_key": k, "_position": n} for k, rows in data.items() for n, r in enumerate(rows)]
            return [(i + 1, {**r, "_file": path.stem}) for i, r in enumerate(data)]
    raise SafeevalError(f"Task {spec.name}: unknown file format '{kind}' for {path}.")


def _hub_error(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _hub_files(spec: Spec, split: str | None, looked: str | None) -> list[tuple[int, dict]]:
    """Datasets published as plain files: fetch them, then read them exactly like a local copy."""
    from huggingface_hub import snapshot_download

    pattern = spec.hub["files"].format(split=split)
    try:
        folder = snapshot_download(spec.hub["dataset"], repo_type="dataset", allow_patterns=[pattern],
                                   token=os.environ.get("HF_TOKEN") or None)
    except Exception as exc:  # offline, gated, missing: one message that says what to do
        raise SafeevalError(_missing_message(spec, looked, _hub_error(exc))) from None
    paths = sorted(Path(folder).glob(pattern))
    if not paths:
        raise SafeevalError(_missing_message(spec, looked, f"no files match {pattern}"))
    return [r for p in paths for r in _read_file(p, spec.local or {}, spec)]


def _hub_rows(spec: Spec, split: str | None, looked: str | None) -> list[tuple[int, dict]]:
    import datasets

    hub = spec.hub
    kwargs = {"split": hub.get("split", "train").format(split=split)}
    if hub.get("data_files"):
        kwargs["data_files"] = hub["data_files"].format(split=split) if isinstance(hub["data_files"], str) else hub["data_files"]
    if hub.get("config"):
        kwargs["name"] = hub["config"]
    try:
        ds = datasets.load_dataset(hub["dataset"], token=os.environ.get("HF_TOKEN") or None, **kwargs)
    except Exception as exc:  # offline, gated, missing: one message that says what to do
        raise SafeevalError(_missing_message(spec, looked, _hub_error(exc))) from None
    rename = hub.get("columns") or {}
    return [(i + 1, {rename.get(k, k): v for k, v in row.items()}) for i, row in enumerate(ds)]


@functools.lru_cache(maxsize=256)
def _compiled(template: str) -> jinja2.Template:
    return _JINJA.from_string(template)  # compiling is most of the cost of a row: do it once per template


def _render(template: str, row: dict, where: str) -> str:
    try:
        return _compiled(template).render(**row)
    except jinja2.UndefinedError as exc:
        raise SafeevalError(f"{where}: {exc}") from None


def _sample(spec: Spec, split: str | None, index: int, line: int, row: dict, source: str) -> Sample:
    where = f"{source.split(' ')[0]}, row at line {line}"
    for col in spec.columns or []:
        if col not in row or row[col] is None:
            raise SafeevalError(f"Task {spec.name}: {where} is missing field '{col}'.")
    for col in spec.required or []:
        if col not in row or row[col] is None or str(row[col]).strip() == "":
            raise SafeevalError(f"Task {spec.name}: {where} is missing field '{col}' (empty or absent).")
    row = {**row, "index": index, "split": split}
    category = _render(spec.category, row, where) if spec.category else None
    if category and spec.category_names:
        category = spec.category_names.get(category, category)
    harmful = spec.harmful
    if isinstance(harmful, str):  # a column name holding true/false
        harmful = str(row.get(harmful)).strip().lower() in ("1", "true", "yes", "harmful", "unsafe")
    needs = None
    if spec.needs_judge:
        rule = spec.needs_judge
        if all(str(row.get(k)) == str(v) for k, v in rule["when"].items()):
            needs = rule["judge"]
    return Sample(
        task=spec.name,
        id=_render(spec.id, row, where) if spec.id else str(index),
        prompt=_render(spec.prompt, row, where),
        category=category,
        harmful=(spec.kind != "utility") if harmful is None else bool(harmful),
        meta={k: _render(v, row, where) for k, v in (spec.meta or {}).items()},
        needs_judge=needs,
        target=_render(spec.target, row, where) if spec.target else None,
    )


def subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded random subset that keeps the file's order, so '--limit 50' is not 50 of one category."""
    if limit is None or limit >= len(samples):
        return samples
    ranked = sorted(samples, key=lambda s: hashlib.sha256(f"{seed}|{s.id}".encode()).hexdigest())
    keep = {id(s) for s in ranked[:limit]}
    return [s for s in samples if id(s) in keep]
