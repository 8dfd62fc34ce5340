"""Human-labelled sets that judges are validated against: a label-set spec (judges/labels/*.yaml, or a user's) turns
its file's rows into samples, responses and one human label each, in the set's scheme.

A spec names the file (`local`, relative to --data-dir, or `hub`; `{split}` in the path picks one of `splits`, and no
split means every split, pooled), the `prompt` (Jinja over the row), the `response` column, the `labels` columns and
how they `combine` (majority, or final: one column with the final label), `values` (raw label -> class), `tie` (the
class of a tied majority; without it a tie is counted as no_label and left out), the `category` (Jinja) and an
optional `task` whose samples give each row its category and metadata (a HarmBench behavior's context).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import data, registry
from .errors import SafeevalError
from .keys import key

CLASSES = {"harm": ("harmful", "not_harmful"), "refusal": ("full_compliance", "full_refusal", "partial_refusal")}
MEASURES = {"harm": "harmfulness of a response", "refusal": "refusal class"}
_HARM_VALUES = {
    "1": "harmful",
    "true": "harmful",
    "yes": "harmful",
    "0": "not_harmful",
    "false": "not_harmful",
    "no": "not_harmful",
}


@dataclass
class LabelledSet:
    name: str  # as selected: "xstest-completions:gpt4"
    scheme: str  # "harm" or "refusal"
    samples: list[data.Sample]
    responses: list[str]
    truth: list[str | None]  # the human class; None where the annotators reached none (a tie), counted as no_label
    splits: list[str | None]  # the split (file) each row came from
    source: str
    hash: str  # of the spec and every row's id, prompt, response and label: the store keys validations by it
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES[self.scheme]


def resolve(name: str, dirs: list[Path] = ()) -> tuple[registry.Spec, str | None]:
    """A label set by name (`xstest-completions:gpt4`) or as a path to its YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SafeevalError(f"No label-set spec at {path}.")
        return registry.load_label_file(path), None
    ((spec, split),) = registry.pick(registry.load_label_sets(list(dirs)), [name], "label set")
    return spec, split


def load(spec: registry.Spec, split: str | None, data_root: Path | None, file: Path | None = None) -> LabelledSet:
    """Every row of the set (of one split, or of all splits pooled), with its human label."""
    splits = spec.splits or []
    if split is not None and split not in splits:
        valid = ", ".join(splits) if splits else "none (this set has one file)"
        raise SafeevalError(f"Label set {spec.name} has no split '{split}'. Valid splits: {valid}.")
    wanted = [split] if split is not None or not splits else list(splits)
    if file is not None:  # a user's file of the same shape replaces the spec's own
        if not Path(file).is_file():
            raise SafeevalError(f"No labelled file at {file}.")
        spec = replace(
            spec, data={**spec.data, "local": {**(spec.local or {}), "path": str(Path(file).resolve())}, "hub": None}
        )
        wanted = [split]
    if spec.tie is not None and spec.tie not in CLASSES[spec.scheme]:
        raise SafeevalError(
            f"Spec {spec.path}: tie must be one of {', '.join(CLASSES[spec.scheme])}, not {spec.tie!r}."
        )
    tasks, notes = _task_samples(spec, data_root)
    name = spec.name if split is None else f"{spec.name}:{split}"
    out = LabelledSet(name, spec.scheme, [], [], [], [], "", "", notes)
    sources, unmatched = [], 0
    for part in wanted:
        # a user's file is an absolute path: found whatever --data-dir says (or without one)
        rows, source = data.spec_rows(spec, part, Path("/") if file is not None else data_root)
        sources.append(source)
        for index, (line, row) in enumerate(rows):
            sample, matched = _sample(spec, part, index, line, row, source, tasks)
            unmatched += not matched
            out.samples.append(sample)
            out.responses.append(str(row.get(spec.response) or ""))
            out.truth.append(_label(spec, row, f"{source.split(' ')[0]}, row at line {line}"))
            out.splits.append(part)
    if tasks is not None and unmatched:
        out.notes.append(f"{unmatched} rows have no {spec.task['name']} sample: their category is unknown")
    out.source = "; ".join(sources)
    out.hash = key(spec.hash, [(s.id, s.prompt, r, t) for s, r, t in zip(out.samples, out.responses, out.truth)])[:16]
    return out


def _task_samples(spec: registry.Spec, data_root: Path | None) -> tuple[dict | None, list[str]]:
    """The joined task's samples by id, where a copy is at hand; otherwise None and a note saying so."""
    if not spec.task:
        return None, []
    name, split = spec.task["name"], spec.task.get("split")
    try:
        task = registry.load_tasks()[name]
        return {s.id: s for s in data.load(task, split, data_root).samples}, []
    except (SafeevalError, KeyError) as exc:
        return None, [f"task {name} not available ({exc}); rows keep their own prompt and have no category"]


def _sample(
    spec: registry.Spec, split: str | None, index: int, line: int, row: dict, source: str, tasks: dict | None
) -> tuple[data.Sample, bool]:
    where = f"{source.split(' ')[0]}, row at line {line}"
    if spec.response not in row or row[spec.response] is None:
        raise SafeevalError(f"Label set {spec.name}: {where} has no response column '{spec.response}'.")
    row = {**row, "index": index, "split": split}
    known = tasks.get(data.render(spec.task["id"], row, where)) if tasks is not None else None
    meta = dict(known.meta) if known else {}
    meta["source_labels"] = {
        k: v for k, v in row.items() if k != spec.response and not k.startswith("_") and k not in ("index", "split")
    }
    category = data.render(spec.category, row, where) if spec.category else (known.category if known else None)
    sample_id = data.render(spec.id, row, where) if spec.id else f"{split or spec.name}#{index}"
    prompt = data.render(spec.prompt, row, where) if spec.prompt else (known.prompt if known else "")
    return data.Sample(spec.name, sample_id, prompt, category, True, meta), known is not None


def _label(spec: registry.Spec, row: dict, where: str) -> str | None:
    classes = CLASSES[spec.scheme]
    values = {str(k): v for k, v in (spec.values or {}).items()}
    votes = []
    for column in spec.labels:
        raw = row.get(column)
        if raw is None or str(raw).strip() == "":
            raise SafeevalError(f"Label set {spec.name}: {where} has no label in column '{column}'.")
        raw = str(raw).strip()
        value = values.get(raw) or (
            _HARM_VALUES.get(raw.lower()) if spec.scheme == "harm" else re.sub(r"^\d+_", "", raw.lower())
        )
        if value not in classes:
            raise SafeevalError(
                f"Label set {spec.name}: {where} has label {raw!r} in column '{column}', which is none "
                f"of {', '.join(classes)} (map it with 'values' in {spec.path})."
            )
        votes.append(value)
    if spec.combine == "final":
        return votes[0]
    ranked = Counter(votes).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return spec.tie  # None: no label (counted); the spec may name the class of a tie
    return ranked[0][0]
