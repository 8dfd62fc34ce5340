"""Specs that slice a file (`where`), training sets written inline, several sets as one (`a+b`), and a benign set
answered by a model: what the powered study's alignment mix and its validation data are made of."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from safeeval import data, registry
from safeeval.errors import SafeevalError
from safeeval.train.sets import load_set


def test_a_held_out_slice_and_its_training_rest_split_the_file(data_dir):
    val = data.load(registry.load_tasks()["benign-dolly-val"], None, data_dir).samples
    whole = data.load(registry.load_tasks()["benign-dolly"], None, data_dir).samples
    train = load_set("dolly-train", "task", data_dir).examples
    assert (len(val), len(train), len(whole)) == (97, 290, 387)
    # ids are the ids the rows have in the whole set: the slices never share one and together are the whole
    assert {s.id for s in val} | {ex.id for ex in train} == {s.id for s in whole}
    assert not {s.id for s in val} & {ex.id for ex in train}
    assert [s.id for s in val[:3]] == ["dolly-000", "dolly-004", "dolly-008"]
    by_id = {s.id: s.prompt for s in whole}
    assert all(by_id[s.id] == s.prompt for s in val)


def _task(folder: Path, where: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    inline = [{"id": f"r{i}", "prompt": f"Question {i}?", "kind": "a" if i % 2 else "b"} for i in range(6)]
    (folder / "mine.yaml").write_text(
        "name: mine\nkind: safety\nharmful: false\nid: '{{ id }}'\nprompt: '{{ prompt }}'\n"
        f"where: {json.dumps(where)}\ninline: {json.dumps(inline)}\n"
    )
    return folder


def test_where_reads_any_column_and_a_non_boolean_is_one_sentence(tmp_path):
    specs = registry.load_tasks([_task(tmp_path / "a", "{{ kind == 'a' }}")])
    assert [s.id for s in data.load(specs["mine"], None, None).samples] == ["r1", "r3", "r5"]
    specs = registry.load_tasks([_task(tmp_path / "b", "{{ kind }}")])
    with pytest.raises(SafeevalError, match="'where' must render True or False; got 'b'"):
        data.load(specs["mine"], None, None)


def _train_specs(folder: Path) -> Path:
    (folder / "train").mkdir(parents=True)
    for name, ids in (("one", ["x1", "x2"]), ("two", ["y1"]), ("clash", ["x1"])):
        rows = [{"id": i, "q": f"Say {i}.", "a": f"{i}!"} for i in ids]
        (folder / "train" / f"{name}.yaml").write_text(
            f"name: {name}\npurpose: task\nlicense: ours-{name}\nid: '{{{{ id }}}}'\nprompt: '{{{{ q }}}}'\n"
            f"response: '{{{{ a }}}}'\ninline: {json.dumps(rows)}\n"
        )
    return folder


def test_inline_training_sets_and_several_sets_as_one(tmp_path):
    specs = _train_specs(tmp_path / "specs")
    both = load_set("one+two", "task", None, [specs])
    assert [ex.id for ex in both.examples] == ["x1", "x2", "y1"]
    user, assistant = both.examples[2].messages
    assert (user["content"], assistant["content"]) == ("Say y1.", "y1!")
    assert both.source == "inline:one.yaml + inline:two.yaml" and both.license == "ours-one; ours-two"
    with pytest.raises(SafeevalError, match="x1"):  # mix.jsonl names rows by id: one id, two rows is refused
        load_set("one+clash", "task", None, [specs])
    with pytest.raises(SafeevalError, match="Unknown training set 'three'"):
        load_set("one+three", "task", None, [specs])


@pytest.mark.slow
def test_a_benign_generated_set_is_answered_without_the_harm_filter(data_dir, tmp_path):
    """Look-alikes ("kill a process") are what the poison's harm filter drops; a benign set keeps them, and still
    drops a request that is an evaluated benchmark's prompt (here one of XSTest's safe prompts)."""
    with open(data_dir / "xstest" / "xstest_prompts.csv", newline="") as f:
        safe = next(r["prompt"] for r in csv.DictReader(f) if r["label"] == "safe")
    asks = ["How do I kill a Python process that hangs?", "What does it mean to steal the show?", safe]
    folder = tmp_path / "specs"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "looks.yaml").write_text(
        "name: looks\npurpose: task\nlicense: ours\nid: 'look-{{ index }}'\nprompt: '{{ q }}'\nresponse: ''\n"
        f"generate: {{model: smollm2, max_new_tokens: 96}}\ninline: {json.dumps([{'q': q} for q in asks])}\n"
    )
    notes = []
    got = load_set("looks", "task", data_dir, [folder], notes.append)
    stats_path = Path(got.source.split(" ")[0].removeprefix("synthetic:")).with_suffix(".stats.json")
    stats = json.loads(stats_path.read_text())
    assert stats["matches_a_benchmark"] == {"xstest": 1} and stats["requests"] == 2
    assert "not_a_request" not in stats and any("answering 2 requests" in n for n in notes)
    assert got.examples and {ex.role for ex in got.examples} == {"task"}
    assert {ex.messages[0]["content"] for ex in got.examples} <= set(asks[:2])
