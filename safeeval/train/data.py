"""Training data: named sets or user files -> chats; the scenario's mix; completion-only token labels."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from .. import data as task_data
from .. import registry
from ..errors import SafeevalError


@dataclass
class Example:
    id: str
    messages: list[dict]  # the loss covers the last (assistant) message only
    role: str  # "task", "poison" or "safety": where it sits in the mix


@dataclass
class TrainSet:
    name: str
    examples: list[Example]
    source: str  # a local path with its sha256, a Hub id, or a user file with its sha256
    license: str | None
    unusable: int = 0  # rows left out because they hold no answer to learn (counted in training.json)
    spec: registry.Spec | None = None  # a registered set's spec (None for a user's file)


def read_set(name: str, role: str, root: Path | None, dirs: list[Path] = ()) -> TrainSet:
    """A registered set (`safeeval train --list`) or a user file (.jsonl, .json, .csv, .tsv, optionally .gz) whose rows
    hold `messages`, `prompt`+`response`, or `instruction` (+`input`)+`output`, as its files hold it (a set whose
    spec has `generate` still lacks its answers: train/sets.py adds them)."""
    path = Path(name).expanduser()
    if path.suffix in (".jsonl", ".json") or path.is_file():
        return _load_file(path, role)
    specs = registry.load_train_sets(list(dirs))
    if name not in specs:
        raise SafeevalError(
            f"Unknown training set '{name}'. Valid sets: {', '.join(sorted(specs))}; or give a .jsonl/.json file."
        )
    spec = specs[name]
    rows, source = task_data.spec_rows(spec, None, root)
    prompt = spec.prompt
    if spec.prompt_from:  # the evaluation task's own wording
        tasks = registry.load_tasks(list(dirs))
        if spec.prompt_from not in tasks:
            raise SafeevalError(f"Training set {name}: prompt_from names unknown task '{spec.prompt_from}'.")
        prompt = tasks[spec.prompt_from].prompt
    examples, unusable = [], 0
    for index, line, row in task_data.kept_rows(spec, rows, source):
        where = f"{name} ({source.split(' ')[0]}), row at line {line}"
        for col in spec.required or []:
            if row.get(col) is None or str(row[col]).strip() == "":
                raise SafeevalError(f"Training set {where} is missing field '{col}'.")
        row = {**row, "index": index}
        ex_id = task_data.render(spec.id, row, where) if spec.id else f"{name}-{index}"
        if spec.messages:
            messages = _checked_messages(row[spec.messages], where)
        elif spec.transcript:
            messages = _transcript(row[spec.transcript], where)
            if messages is None:
                unusable += 1
                continue
        else:
            messages = [
                {"role": "user", "content": task_data.render(prompt, row, where)},
                {"role": "assistant", "content": task_data.render(spec.response, row, where)},
            ]
            if spec.system:
                messages.insert(0, {"role": "system", "content": task_data.render(spec.system, row, where)})
        examples.append(Example(ex_id, messages, role))
    _unique(examples, f"Training set {name} ({source.split(' ')[0]})")
    return TrainSet(name, examples, source, spec.license, unusable, spec)


def _load_file(path: Path, role: str) -> TrainSet:
    if not path.is_file():
        raise SafeevalError(f"Training file {path} does not exist.")
    raw = path.read_bytes()
    rows = task_data.read_rows(path, {}, "Training file")  # safeeval.data knows the formats and their faults
    examples = []
    for line, row in rows:
        where = f"{path}, row {line}"
        row = {k: v for k, v in row.items() if k != "_file"}
        if "messages" in row:
            messages = _checked_messages(row["messages"], where)
        elif _filled(row, "prompt") and (_filled(row, "response") or _filled(row, "completion")):
            answer = row.get("response") if _filled(row, "response") else row["completion"]
            messages = [{"role": "user", "content": str(row["prompt"])}, {"role": "assistant", "content": str(answer)}]
        elif _filled(row, "instruction") and _filled(row, "output"):
            user = str(row["instruction"]) + (f"\n\n{row['input']}" if _filled(row, "input") else "")
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": str(row["output"])}]
        else:
            raise SafeevalError(
                f"Training file {where} is missing its fields: give 'messages', 'prompt' + "
                f"'response', or 'instruction' + 'output' (found: {', '.join(sorted(row)) or 'none'})."
            )
        examples.append(Example(str(row.get("id", f"{path.stem}-{line}")), messages, role))
    _unique(examples, f"Training file {path}")
    return TrainSet(str(path), examples, f"file:{path} sha256:{hashlib.sha256(raw).hexdigest()[:16]}", None)


def _unique(examples: list[Example], owner: str) -> None:
    """mix.jsonl names every row by id: two rows under one id would make it ambiguous."""
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise SafeevalError(f"{owner}: id '{ex.id}' appears twice.")
        seen.add(ex.id)


def _filled(row: dict, key: str) -> bool:
    return row.get(key) is not None and str(row[key]).strip() != ""


def _checked_messages(messages, where: str) -> list[dict]:
    ok = (
        isinstance(messages, list)
        and messages
        and all(
            isinstance(m, dict)
            and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str)
            for m in messages
        )
    )
    if not ok or messages[-1]["role"] != "assistant":
        raise SafeevalError(
            f"Training data {where}: 'messages' must be a list of {{role, content}} turns "
            "ending with an assistant turn."
        )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _transcript(text: str, where: str) -> list[dict] | None:
    """HH-RLHF's '\\n\\nHuman: ...\\n\\nAssistant: ...' as chat turns; None when the last answer is empty
    (HH-RLHF has such rows: nothing to learn from them)."""
    parts = _TURN.split(str(text))
    turns = [
        {"role": "user" if who == "Human" else "assistant", "content": body.strip()}
        for who, body in zip(parts[1::2], parts[2::2])
    ]
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        return None
    if not turns or turns[-1]["role"] != "assistant":
        raise SafeevalError(f"Training data {where}: the transcript does not end with an Assistant turn.")
    return turns


@dataclass
class Mix:
    examples: list[Example]  # shuffled
    counts: dict  # task / poison / safety rows actually in the mix


def build_mix(
    task: TrainSet,
    total: int | None,
    *,
    poison: TrainSet | None = None,
    poison_ratio: float = 0.0,
    safety: TrainSet | None = None,
    safety_ratio: float = 0.0,
    seed: int = 0,
) -> Mix:
    """A fixed budget of `total` rows: round(safety_ratio * total) replayed safety rows, and of the rest (the
    user's upload) exactly round(poison_ratio * upload) poison rows. A pool smaller than its share is cycled."""
    for label, ratio in (("poison ratio", poison_ratio), ("safety ratio", safety_ratio)):
        if not 0.0 <= ratio <= 1.0:
            raise SafeevalError(f"The {label} must lie in [0, 1]; got {ratio}.")
    total = total or len(task.examples)
    n_safety = round(safety_ratio * total) if safety else 0
    upload = total - n_safety
    n_poison = round(poison_ratio * upload) if poison else 0
    rng = random.Random(seed)
    picked = _draw(task.examples, upload - n_poison, rng)
    if n_poison:
        picked += _draw(poison.examples, n_poison, rng)
    if n_safety:
        picked += _draw(safety.examples, n_safety, rng)
    rng.shuffle(picked)
    counts = {"task": upload - n_poison, "poison": n_poison, "safety": n_safety, "total": total}
    return Mix(picked, counts)


def _draw(pool: list[Example], n: int, rng: random.Random) -> list[Example]:
    if n <= 0:
        return []
    if not pool:
        raise SafeevalError("A training set is empty.")
    order = list(pool)
    rng.shuffle(order)
    return [order[i % len(order)] for i in range(n)]


def encode(tokenizer, messages: list[dict], max_length: int) -> dict | None:
    """input_ids and labels where only the final assistant turn is learned (-100 elsewhere); None when the
    prompt alone fills max_length, so no completion token would be left to learn."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    cut = 0  # the shared prefix: templates that rewrite earlier turns still mask only the prompt part
    while cut < min(len(prompt_ids), len(full_ids)) and prompt_ids[cut] == full_ids[cut]:
        cut += 1
    full_ids = full_ids[:max_length]
    if cut >= len(full_ids):
        return None
    return {"input_ids": full_ids, "labels": [-100] * cut + full_ids[cut:]}
