"""Benchmarks load from the real reference files, validate their rows, and fail with useful messages."""

from __future__ import annotations

from collections import Counter

import pytest

from safeeval import data, registry
from safeeval.errors import SafeevalError


@pytest.fixture(scope="module")
def specs():
    return registry.load_tasks()


def test_advbench_has_520_behaviors(specs, data_dir):
    got = data.load(specs["advbench"], None, data_dir)
    assert len(got.samples) == 520
    assert got.samples[0].id == "advbench-000"
    assert got.samples[0].prompt.startswith("Write a script that can exploit vulnerabilities")
    assert got.samples[0].meta["target"].startswith("Sure, here is")
    assert "sha256:6cd1a5c63c07610d" in got.source


@pytest.mark.parametrize("split,rows", [("val", 80), ("test", 320), ("all", 400), (None, 320)])
def test_harmbench_splits_and_categories(specs, data_dir, split, rows):
    got = data.load(specs["harmbench"], split, data_dir)
    assert len(got.samples) == rows
    assert all(s.meta["semantic_category"] and s.meta["functional_category"] for s in got.samples)
    assert all(s.category == s.meta["semantic_category"] for s in got.samples)


def test_harmbench_context_and_copyright(specs, data_dir):
    samples = data.load(specs["harmbench"], "all", data_dir).samples
    kinds = Counter(s.meta["functional_category"] for s in samples)
    assert kinds == {"standard": 200, "contextual": 100, "copyright": 100}
    contextual = [s for s in samples if s.meta["functional_category"] == "contextual"]
    # HarmBench puts the context above the request, separated by a rule.
    assert all(s.prompt == f"{s.meta['context']}\n\n---\n\n{s.meta['behavior']}" for s in contextual)
    standard = [s for s in samples if s.meta["functional_category"] == "standard"]
    assert all(s.prompt == s.meta["behavior"] for s in standard)
    assert {s.needs_judge for s in samples if s.meta["functional_category"] == "copyright"} == {"copyright-hash"}
    assert all(s.needs_judge is None for s in samples if s.meta["functional_category"] != "copyright")


def test_smoke_set_is_balanced_and_offline(specs):
    samples = data.load(specs["smoke"], None, None).samples
    assert sum(s.harmful for s in samples) == 20
    assert sum(not s.harmful for s in samples) == 20
    assert len({s.category for s in samples}) == 10


def test_unknown_split_names_valid_ones(specs, data_dir):
    with pytest.raises(SafeevalError, match="Valid splits: val, test, all"):
        data.load(specs["harmbench"], "train", data_dir)


def test_hexphi_missing_explains_access(specs, tmp_path):
    with pytest.raises(SafeevalError) as err:
        data.load(specs["hexphi"], None, tmp_path)
    message = str(err.value)
    assert str(tmp_path / "hex_phi" / "category_*.csv") in message
    assert "HF_TOKEN" in message and "request access" in message


def test_hexphi_local_copy_gets_category_names(specs, tmp_path):
    folder = tmp_path / "hex_phi"
    folder.mkdir()
    (folder / "category_1.csv").write_text("first made-up prompt\nsecond made-up prompt\n")
    (folder / "category_4.csv").write_text('"a prompt, with a comma"\n')
    samples = data.load(specs["hexphi"], None, tmp_path).samples
    assert [s.category for s in samples] == ["illegal_activity", "illegal_activity", "malware"]
    assert samples[2].prompt == "a prompt, with a comma"


def test_malformed_file_names_path_row_and_field(specs, tmp_path):
    folder = tmp_path / "advbench"
    folder.mkdir()
    (folder / "harmful_behaviors.csv").write_text("goal,target\nfirst goal,first target\n,second target\n")
    with pytest.raises(SafeevalError) as err:
        data.load(specs["advbench"], None, tmp_path)
    assert "harmful_behaviors.csv" in str(err.value) and "line 3" in str(err.value) and "'goal'" in str(err.value)


def test_missing_column_is_reported(specs, tmp_path):
    folder = tmp_path / "advbench"
    folder.mkdir()
    (folder / "harmful_behaviors.csv").write_text("goal\nonly a goal\n")
    with pytest.raises(SafeevalError, match="missing field 'target'"):
        data.load(specs["advbench"], None, tmp_path)


def test_missing_data_says_where_it_looked(specs, tmp_path):
    with pytest.raises(SafeevalError) as err:
        data.load(specs["advbench"], None, tmp_path)
    assert str(tmp_path / "advbench" / "harmful_behaviors.csv") in str(err.value)
    assert "walledai/AdvBench" in str(err.value)


def test_user_adds_a_benchmark_with_yaml_only(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mine.yaml").write_text(
        "name: mine\nlocal: {path: mine/rows.jsonl}\ncolumns: [q, kind]\nrequired: [q]\n"
        "id: 'mine-{{ index }}'\nprompt: 'Question: {{ q }}'\ncategory: '{{ kind }}'\n"
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "rows.jsonl").write_text('{"q": "one?", "kind": "a"}\n{"q": "two?", "kind": "b"}\n')
    specs = registry.load_tasks([tmp_path / "specs"])
    assert {"advbench", "mine"} <= set(specs)
    got = data.load(specs["mine"], None, tmp_path)
    assert [(s.id, s.prompt, s.category) for s in got.samples] == [
        ("mine-0", "Question: one?", "a"),
        ("mine-1", "Question: two?", "b"),
    ]


def test_bad_spec_is_reported(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: broken\nprompt: x\nlocal: {path: x.csv}\nsurprise: 1\n")
    with pytest.raises(SafeevalError, match="unknown keys \\['surprise'\\]"):
        registry.load_tasks([tmp_path])


def test_unknown_names_list_valid_ones(specs):
    with pytest.raises(
        SafeevalError, match="Unknown task 'advbnch'. Valid tasks: advbench, .*harmbench, hexphi, .*smoke"
    ):
        registry.pick(specs, ["advbnch"], "task")


def test_subsample_is_seeded_and_keeps_order(specs, data_dir):
    samples = data.load(specs["advbench"], None, data_dir).samples
    a, b, c = (data.subsample(samples, 50, seed) for seed in (0, 0, 1))
    assert [s.id for s in a] == [s.id for s in b] != [s.id for s in c]
    assert len(a) == 50 and [s.id for s in a] == sorted(s.id for s in a)
