"""Turns a task spec into validated samples; the only module that knows file formats."""

from __future__ import annotations

import csv
import functools
import glob
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
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
    rows, source = spec_rows(spec, split, data_root)
    if spec.fewshot:  # worked examples for the prompt template, as `fewshot`
        shots, shot_source = _fewshot(spec, split, data_root)
        rows, source = [(line, {**row, "fewshot": shots}) for line, row in rows], f"{source} fewshot:{shot_source}"
    samples = [_sample(spec, split, i, line, row, source) for i, line, row in kept_rows(spec, rows, source)]
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


def spec_rows(spec: Spec, split: str | None, root: Path | None) -> tuple[list[tuple[int, dict]], str]:
    """The raw rows of any spec with `local`/`hub` (a task, a training or label set) as (line, row), and their
    source."""
    if spec.inline:
        return [(i + 1, r) for i, r in enumerate(spec.inline)], f"inline:{spec.path.name}"
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
    rows, source = spec_rows(
        Spec(spec.name, spec.path, {"local": shot.get("local"), "hub": shot.get("hub")}), split, root
    )
    seed = shot.get("seed", 0)
    ranked = sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"{seed}|{i}".encode()).hexdigest())
    return [rows[i][1] for i in ranked[: int(shot["n"])]], source


# --- reading files ------------------------------------------------------------------------------------------
# Every reader returns [(line or position, row dict)] or raises SafeevalError with one sentence naming the file
# and what is wrong with it: never a traceback, never a row dropped without saying so.

FORMATS = ("csv", "tsv", "json", "jsonl")
_TARS = (".tar.gz", ".tgz", ".tar")


def read_rows(path: Path, fmt: dict, owner: str) -> list[tuple[int, dict]]:
    """The rows of one data file. `fmt` is the spec's local (or hub) block: `format` (default: from the file name,
    after a .gz), `header_names` and `quoting` (csv/tsv), `field` (json: the key holding the rows, as `datasets`'
    JSON loader takes it), `column` (rows that are plain strings become {column: string}; default "text"),
    `member` (tarballs of JSON files). `owner` starts every message (e.g. "Task mybench")."""
    path = Path(path)
    try:
        if path.name.endswith(_TARS):
            rows = _tar_rows(path, fmt, owner)
        else:
            kind = fmt.get("format") or (path.name[:-3] if path.name.endswith(".gz") else path.name).rsplit(".", 1)[-1]
            if kind not in FORMATS:
                raise SafeevalError(
                    f"{owner}: unknown file format '{kind}' for {path}; give a .csv, .tsv, .json "
                    "or .jsonl file (optionally .gz), or a tarball of JSON files."
                )
            raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
            rows = _parse(kind, _text(raw, path, owner), fmt, path, owner)
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:  # unreadable, truncated or corrupt archives
        why = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
        raise SafeevalError(f"{owner}: {path} could not be read ({why}).") from None
    if not rows:
        raise SafeevalError(f"{owner}: {path} holds no rows.")
    return rows


def read_json(path: Path, owner: str):
    """One JSON document (a file of another shape than rows, e.g. labels); SafeevalError with one sentence."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SafeevalError(f"{owner}: {path} could not be read ({exc.strerror or exc}).") from None
    return _json(_text(raw, path, owner), path, owner)


def _text(raw: bytes, path: Path, owner: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark, as spreadsheet programs write, is not part of the data
    except UnicodeDecodeError as exc:
        raise SafeevalError(
            f"{owner}: {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8."
        ) from None


def _parse(kind: str, text: str, fmt: dict, path: Path, owner: str) -> list[tuple[int, dict]]:
    if fmt.get("field") is not None and kind != "json":
        raise SafeevalError(f"{owner}: 'field' names the key holding the rows of a .json file; {path} is {kind}.")
    if kind in ("csv", "tsv"):
        return _csv_rows(text, kind, fmt, path, owner)
    if kind == "jsonl":
        items = []
        for n, line in enumerate(text.split("\n"), 1):
            if line.strip():
                items.append((n, _json(line, path, owner, f"line {n}")))
        return _shaped(items, fmt, path, owner, "line")
    data = _json(text, path, owner)
    field_name = fmt.get("field")
    if field_name == "*":  # {key: [rows]} (HarmBench's classifier sets): every row keeps its key and position
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise SafeevalError(
                f'{owner}: `field: "*"` reads an object whose every value is a list of rows; {path} '
                f"holds {json_kind(data)}{'' if not isinstance(data, dict) else ' with other values'}."
            )
        data = [
            {**r, "_key": k, "_position": n} if isinstance(r, dict) else r
            for k, rows in data.items()
            for n, r in enumerate(rows)
        ]
    elif field_name is not None:
        if not isinstance(data, dict) or field_name not in data:
            found = f"keys {', '.join(map(str, list(data)[:10]))}" if isinstance(data, dict) else json_kind(data)
            raise SafeevalError(f"{owner}: {path} has no key '{field_name}' at its top level (found: {found}).")
        data = data[field_name]
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        hint = (
            f"name the key holding them with `field: {lists[0]}` next to `path`"
            if lists
            else "give a list of rows, or name the key holding them with `field:` next to `path`"
        )
        raise SafeevalError(
            f"{owner}: {path} is a JSON object (keys: {', '.join(list(data)[:10]) or 'none'}), "
            f"not a list of rows; {hint}."
        )
    if not isinstance(data, list):
        raise SafeevalError(f"{owner}: {path} holds {json_kind(data)}, not a list of rows.")
    return _shaped(list(enumerate(data, 1)), fmt, path, owner, "row")


def _json(text: str, path: Path, owner: str, where: str = ""):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = where or f"line {exc.lineno} column {exc.colno}"
        raise SafeevalError(f"{owner}: {path} is not valid JSON at {at} ({exc.msg}).") from None
    except RecursionError:
        raise SafeevalError(f"{owner}: {path} nests JSON too deeply{' at ' + where if where else ''}.") from None


def json_kind(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _shaped(items: list[tuple[int, object]], fmt: dict, path: Path, owner: str, unit: str) -> list[tuple[int, dict]]:
    """Rows that are all objects, or all plain strings (one column, `column` or "text"); anything else is refused."""
    if items and all(isinstance(v, str) for _, v in items):
        column = fmt.get("column") or "text"
        return [(n, {column: v, "_file": path.stem}) for n, v in items]
    for n, value in items:
        if not isinstance(value, dict):
            first = json_kind(items[0][1])
            raise SafeevalError(
                f"{owner}: {path} {unit} {n} is {json_kind(value)}, not an object"
                f"{' like the rows before it' if n != items[0][0] else ''}; rows must all be objects, "
                f"or all plain strings (found {first} first)."
            )
    return [(n, {**value, "_file": path.stem}) for n, value in items]


def _csv_rows(text: str, kind: str, fmt: dict, path: Path, owner: str) -> list[tuple[int, dict]]:
    csv.field_size_limit(max(csv.field_size_limit(), 2**30))  # a long document in one cell is still a row
    quoting = csv.QUOTE_NONE if fmt.get("quoting") == "none" else csv.QUOTE_MINIMAL  # GLUE's TSVs
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",", quoting=quoting, strict=True
    )
    rows = []
    try:
        header = fmt.get("header_names") or next(reader, None)  # header_names: for files without a header row
        if header is None:
            return []
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise SafeevalError(f"{owner}: {path} names column(s) {', '.join(map(repr, twice))} twice in its header.")
        for fields in reader:
            if not fields:
                continue  # a blank line is not a row
            if len(fields) != len(header):
                raise SafeevalError(
                    f"{owner}: {path} has {len(fields)} fields in the row ending at line "
                    f"{reader.line_num}, and {len(header)} columns in its header."
                )
            rows.append((reader.line_num, {**dict(zip(header, fields)), "_file": path.stem}))
    except csv.Error as exc:  # an unterminated quote (a truncated file), a stray quote in strict mode
        raise SafeevalError(
            f"{owner}: {path} is not valid {kind.upper()} near line {reader.line_num} ({exc})."
        ) from None
    return rows


def _tar_rows(path: Path, fmt: dict, owner: str) -> list[tuple[int, dict]]:
    """A tarball of JSON files, one problem each (the MATH release): members matching `member`, in name order;
    `_member` is the path inside the tarball, `_file` its stem."""
    import fnmatch

    rows = []
    with tarfile.open(path) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, fmt.get("member", "*.json"))),
            key=lambda m: m.name,
        )
        for m in members:
            where = Path(f"{path}:{m.name}")
            data = _json(_text(tar.extractfile(m).read(), where, owner), where, owner)
            items = _shaped(list(enumerate(data if isinstance(data, list) else [data], 1)), fmt, where, owner, "item")
            rows += [(len(rows) + 1, {**r, "_file": Path(m.name).stem, "_member": m.name}) for _, r in items]
    return rows


def _read_file(path: Path, fmt: dict, spec: Spec) -> list[tuple[int, dict]]:
    kind = "Label set" if spec.scheme else "Training set" if spec.purpose else "Task"
    return read_rows(path, fmt, f"{kind} {spec.name}")


def _hub_error(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _hub_files(spec: Spec, split: str | None, looked: str | None) -> list[tuple[int, dict]]:
    """Datasets published as plain files: fetch them, then read them exactly like a local copy."""
    from huggingface_hub import snapshot_download

    pattern = spec.hub["files"].format(split=split)
    try:
        folder = snapshot_download(
            spec.hub["dataset"], repo_type="dataset", allow_patterns=[pattern], token=os.environ.get("HF_TOKEN") or None
        )
    except Exception as exc:  # offline, gated, missing: one message that says what to do
        raise SafeevalError(_missing_message(spec, looked, _hub_error(exc))) from None
    paths = sorted(Path(folder).glob(pattern))
    if not paths:
        raise SafeevalError(_missing_message(spec, looked, f"no files match {pattern}"))
    fmt = {**(spec.local or {}), **{k: v for k, v in spec.hub.items() if k in ("format", "field", "column", "member")}}
    return [r for p in paths for r in _read_file(p, fmt, spec)]


def _hub_rows(spec: Spec, split: str | None, looked: str | None) -> list[tuple[int, dict]]:
    import datasets

    hub = spec.hub
    kwargs = {"split": hub.get("split", "train").format(split=split)}
    if hub.get("data_files"):
        kwargs["data_files"] = (
            hub["data_files"].format(split=split) if isinstance(hub["data_files"], str) else hub["data_files"]
        )
    if hub.get("config"):
        kwargs["name"] = hub["config"]
    if hub.get("field"):  # the key holding the rows of a JSON file, as datasets' JSON loader takes it
        kwargs["field"] = hub["field"]
    try:
        ds = datasets.load_dataset(hub["dataset"], token=os.environ.get("HF_TOKEN") or None, **kwargs)
    except Exception as exc:  # offline, gated, missing: one message that says what to do
        raise SafeevalError(_missing_message(spec, looked, _hub_error(exc))) from None
    rename = hub.get("columns") or {}
    return [(i + 1, {rename.get(k, k): v for k, v in row.items()}) for i, row in enumerate(ds)]


@functools.lru_cache(maxsize=256)
def _compiled(template: str) -> jinja2.Template:
    return _JINJA.from_string(template)  # compiling is most of the cost of a row: do it once per template


def render(template: str, row: dict, where: str) -> str:
    try:
        return _compiled(template).render(**row)
    except jinja2.UndefinedError as exc:
        raise SafeevalError(f"{where}: {exc}") from None


def kept_rows(spec: Spec, rows: list[tuple[int, dict]], source: str) -> list[tuple[int, int, dict]]:
    """(index, line, row) of the rows the spec's `where` keeps (all without one), e.g. `where: "{{ index % 4 == 0
    }}"` for a held-out slice. index is the row's position in the whole file, so a slice's ids are the ids its
    rows have in the whole set, and two slices of one file never share an id."""
    out = []
    for index, (line, row) in enumerate(rows):
        if spec.where:
            verdict = render(spec.where, {**row, "index": index}, f"{source.split(' ')[0]}, row at line {line}")
            if verdict.strip() not in ("True", "False"):
                raise SafeevalError(f"Spec {spec.name}: 'where' must render True or False; got {verdict.strip()!r}.")
            if verdict.strip() == "False":
                continue
        out.append((index, line, row))
    return out


def _sample(spec: Spec, split: str | None, index: int, line: int, row: dict, source: str) -> Sample:
    where = f"{source.split(' ')[0]}, row at line {line}"
    for col in spec.columns or []:
        if col not in row or row[col] is None:
            raise SafeevalError(f"Task {spec.name}: {where} is missing field '{col}'.")
    for col in spec.required or []:
        if col not in row or row[col] is None or str(row[col]).strip() == "":
            raise SafeevalError(f"Task {spec.name}: {where} is missing field '{col}' (empty or absent).")
    row = {**row, "index": index, "split": split}
    category = render(spec.category, row, where) if spec.category else None
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
        id=render(spec.id, row, where) if spec.id else str(index),
        prompt=render(spec.prompt, row, where),
        category=category,
        harmful=(spec.kind != "utility") if harmful is None else bool(harmful),
        meta={k: render(v, row, where) for k, v in (spec.meta or {}).items()},
        needs_judge=needs,
        target=render(spec.target, row, where) if spec.target else None,
    )


def subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded random subset that keeps the file's order, so '--limit 50' is not 50 of one category."""
    if limit is None or limit >= len(samples):
        return samples
    ranked = sorted(samples, key=lambda s: hashlib.sha256(f"{seed}|{s.id}".encode()).hexdigest())
    keep = {id(s) for s in ranked[:limit]}
    return [s for s in samples if id(s) in keep]
