"""Finds, validates and describes the declarative specs in tasks/ and judges/."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import SafeevalError
from .keys import digest

_PACKAGE = Path(__file__).resolve().parent
TASK_KEYS = {
    "name",
    "description",
    "kind",
    "license",
    "url",
    "citation",
    "rows",
    "splits",
    "default_split",
    "local",
    "hub",
    "inline",
    "columns",
    "required",
    "id",
    "prompt",
    "category",
    "category_names",
    "harmful",
    "meta",
    "breakdowns",
    "needs_judge",
    "access",
    "target",
    "scorer",
    "scorer_options",
    "fewshot",
    "answer_tokens",
    "report",
    "where",
}
JUDGE_KEYS = {
    "name",
    "description",
    "kind",
    "markers",
    "case_sensitive",
    "license",
    "url",
    "model",
    "backend",
    "max_new_tokens",
    "variants",
    "format",
    "template",
    "template_file",
    "version",
    "chat_template",
    "members",
    "rule",
    "citation",
    "threshold",
}


def builtin_dir(kind: str) -> Path:
    """Specs ship in the wheel as safeeval/specs/<kind>; in a source checkout they sit at the top level."""
    packaged = _PACKAGE / "specs" / kind
    return packaged if packaged.is_dir() else _PACKAGE.parent / kind


@dataclass(frozen=True)
class Spec:
    """A validated spec file; its fields read as attributes, absent optional ones as None. A name no spec kind
    defines is an AttributeError, so a misspelt key fails loudly instead of reading as absent."""

    name: str
    path: Path
    data: dict = field(repr=False)
    hash: str = ""  # of the parsed content: part of every result's provenance

    def __getattr__(self, key):
        if key not in SPEC_KEYS:
            raise AttributeError(f"spec field {key!r} does not exist")
        return self.data.get(key)


def _read(path: Path, allowed: set[str], required: tuple[str, ...]) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SafeevalError(f"Spec {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SafeevalError(f"Spec {path} must be a YAML mapping.")
    unknown = set(data) - allowed
    if unknown:
        raise SafeevalError(f"Spec {path} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}.")
    missing = [k for k in required if k not in data]
    if missing:
        raise SafeevalError(f"Spec {path} lacks required keys {missing}.")
    return data


def _spec_hash(data: dict) -> str:
    return digest(data, ascii=False)


def _collect(kind: str, extra_dirs: list[Path]) -> list[Path]:
    files: dict[str, Path] = {}
    for folder in [builtin_dir(kind), *extra_dirs]:
        if not Path(folder).is_dir():
            raise SafeevalError(f"{kind.capitalize()} folder {folder} does not exist.")
        for path in sorted(Path(folder).glob("*.yaml")):
            files[path.stem] = path  # a user's spec of the same name replaces the built-in one
    return list(files.values())


def load_tasks(extra_dirs: list[Path] = ()) -> dict[str, Spec]:
    specs = {}
    for path in _collect("tasks", list(extra_dirs)):
        data = _read(path, TASK_KEYS, ("name", "prompt"))
        if not (data.get("local") or data.get("hub") or data.get("inline")):
            raise SafeevalError(f"Spec {path} names no data: give 'local', 'hub' or 'inline'.")
        if data.get("kind") == "utility" and not data.get("scorer"):
            raise SafeevalError(f"Spec {path} is a utility task: name its 'scorer'.")
        specs[data["name"]] = Spec(data["name"], path, data, _spec_hash(data))
    return specs


TRAIN_KEYS = {
    "name",
    "description",
    "purpose",
    "license",
    "url",
    "citation",
    "rows",
    "local",
    "hub",
    "required",
    "id",
    "prompt",
    "prompt_from",
    "response",
    "system",
    "messages",
    "transcript",
    "overlaps",
    "generate",
    "inline",
    "where",
}


def load_train_sets(extra_dirs: list[Path] = ()) -> dict[str, Spec]:
    """Training data (a user's task, safety demonstrations, poison), from tasks/train/ (and each --tasks-dir's
    train/). A set becomes chats by prompt+response templates, a column holding messages, or a transcript."""
    specs = {}
    for folder in [builtin_dir("tasks"), *extra_dirs]:
        for path in sorted((Path(folder) / "train").glob("*.yaml")):
            data = _read(path, TRAIN_KEYS, ("name", "purpose"))
            if data["purpose"] not in ("task", "safety", "poison"):
                raise SafeevalError(f"Spec {path}: purpose must be task, safety or poison, not {data['purpose']!r}.")
            ways = [k for k in ("response", "messages", "transcript") if k in data]
            if len(ways) != 1 or ("response" in data and not ("prompt" in data or "prompt_from" in data)):
                raise SafeevalError(
                    f"Spec {path} must say how a row becomes a chat: prompt (or prompt_from) + "
                    "response, or messages: COLUMN, or transcript: COLUMN."
                )
            if not (data.get("local") or data.get("hub") or data.get("inline")):
                raise SafeevalError(f"Spec {path} names no data: give 'local', 'hub' or 'inline'.")
            if not isinstance(data.get("overlaps", []), list):
                raise SafeevalError(f"Spec {path}: overlaps must list the evaluation tasks that share its prompts.")
            specs[data["name"]] = Spec(data["name"], path, data, _spec_hash(data))
    return specs


SUITE_KEYS = {"name", "description", "tasks", "metric", "citation"}


def load_suites(extra_dirs: list[Path] = ()) -> dict[str, Spec]:
    """Named groups of tasks whose metric is averaged, from tasks/suites/ (and each --tasks-dir's suites/)."""
    suites = {}
    for folder in [builtin_dir("tasks"), *extra_dirs]:
        for path in sorted((Path(folder) / "suites").glob("*.yaml")):
            data = _read(path, SUITE_KEYS, ("name", "tasks", "metric"))
            suites[data["name"]] = Spec(data["name"], path, data, _spec_hash(data))
    return suites


def load_judges(extra_dirs: list[Path] = ()) -> dict[str, Spec]:
    specs = {}
    for path in _collect("judges", list(extra_dirs)):
        if path.stem == "refusal_markers":
            continue  # a data file of marker lists, referenced by keyword judges
        data = _read(path, JUDGE_KEYS, ("name", "kind"))
        specs[data["name"]] = Spec(data["name"], path, data, _spec_hash(data))
    return specs


LABEL_KEYS = {
    "name",
    "description",
    "license",
    "url",
    "citation",
    "access",
    "rows",
    "scheme",
    "local",
    "hub",
    "splits",
    "default_split",
    "id",
    "prompt",
    "response",
    "labels",
    "combine",
    "values",
    "tie",
    "category",
    "task",
}
LABEL_SCHEMES = ("harm", "refusal")


def load_label_sets(extra_dirs: list[Path] = ()) -> dict[str, Spec]:
    """Human-labelled sets a judge is validated against, from judges/labels/ and each extra folder (its *.yaml, or
    its labels/ sub-folder). A user's set of the same name replaces the built-in one."""
    files: dict[str, Path] = {}
    for folder in [builtin_dir("judges") / "labels", *extra_dirs]:
        folder = Path(folder)
        if not folder.is_dir():
            raise SafeevalError(f"Label-set folder {folder} does not exist.")
        for path in sorted([*folder.glob("*.yaml"), *(folder / "labels").glob("*.yaml")]):
            files[path.stem] = path
    return {spec.name: spec for spec in map(load_label_file, files.values())}


def load_label_file(path: Path) -> Spec:
    """One label-set spec: where the file is, which columns hold prompt, response and labels, and how labels combine."""
    data = _read(Path(path), LABEL_KEYS, ("name", "scheme", "response", "labels"))
    if data["scheme"] not in LABEL_SCHEMES:
        raise SafeevalError(f"Spec {path}: scheme must be one of {', '.join(LABEL_SCHEMES)}, not {data['scheme']!r}.")
    if not (data.get("local") or data.get("hub")):
        raise SafeevalError(f"Spec {path} names no data: give 'local' or 'hub'.")
    labels, combine = data["labels"], data.get("combine", "majority")
    if (
        not (isinstance(labels, list) and labels)
        or combine not in ("majority", "final")
        or (combine == "final" and len(labels) != 1)
    ):
        raise SafeevalError(
            f"Spec {path}: 'labels' lists the label columns; 'combine' is majority (of several "
            "columns) or final (one column holding the final label)."
        )
    return Spec(data["name"], Path(path), data, _spec_hash(data))


SPEC_KEYS = TASK_KEYS | JUDGE_KEYS | TRAIN_KEYS | SUITE_KEYS | LABEL_KEYS


def load_judge_file(path: Path) -> Spec:
    """One judge spec from a file the user points to."""
    data = _read(Path(path), JUDGE_KEYS, ("name", "kind"))
    return Spec(data["name"], Path(path), data, _spec_hash(data))


def marker_lists(extra_dirs: list[Path] = ()) -> dict[str, dict]:
    lists = {}
    for folder in [builtin_dir("judges"), *extra_dirs]:
        path = Path(folder) / "refusal_markers.yaml"
        if path.exists():
            lists.update(yaml.safe_load(path.read_text())["lists"])
    return lists


def name_list(value) -> list[str]:
    """'a, b' or ['a', 'b'] -> ['a', 'b']: how every command and file lists tasks, judges and the like."""
    items = value.split(",") if isinstance(value, str) else value
    return [str(v).strip() for v in items if str(v).strip()]


def named_numbers(items: list[str], flag: str, shape: str, valid) -> dict[str, float]:
    """['sst2=1.2', ...] -> {'sst2': 1.2}: how commands take a number per task or metric. An item that is not
    NAME=NUMBER, or whose number `valid` refuses, is one sentence naming `flag` and the `shape` expected."""
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None or not valid(number):
            raise SafeevalError(f"{flag} '{item}' is not {shape}.")
        out[name.strip()] = number
    return out


def split_name(name: str) -> tuple[str, str | None]:
    """'harmbench:val' -> ('harmbench', 'val'); the part after ':' is a split or judge variant."""
    base, _, variant = name.partition(":")
    return base.strip(), (variant.strip() or None)


def pick(specs: dict, names: list[str], what: str) -> list[tuple[object, str | None]]:
    """Look names up, naming the valid choices when one is unknown."""
    chosen = []
    for name in names:
        base, variant = split_name(name)
        if base not in specs:
            raise SafeevalError(f"Unknown {what} '{base}'. Valid {what}s: {', '.join(sorted(specs))}.")
        chosen.append((specs[base], variant))
    return chosen
