"""Utility tasks: scorers run like judges (cached in the store), no-answer counts as wrong and is shown."""

from __future__ import annotations

import json

import pytest

from safeeval import data, registry
from safeeval.data import Sample
from safeeval.errors import SafeevalError
from safeeval.run import ScoreConfig, score
from safeeval.scoring import make_scorer


def test_sst2_dev_set_loads_with_labels(data_dir):
    samples = data.load(registry.load_tasks()["sst2"], None, data_dir).samples
    assert len(samples) == 872 and sum(s.target == "positive" for s in samples) == 444
    assert samples[0].prompt.endswith("Sentence: it 's a charming and often affecting journey . ")


@pytest.mark.parametrize(
    "answer,score,status",
    [
        ("positive", 1.0, "ok"),
        ("Negative.", 0.0, "ok"),
        ("The sentiment is POSITIVE", 1.0, "ok"),
        ("It is positive, not negative", 1.0, "ok"),
        ("I am not sure.", None, "unparsed"),
        ("", None, "unparsed"),
    ],
)
def test_sst2_label_word(answer, score, status):
    scorer = make_scorer(registry.load_tasks()["sst2"])
    verdict = scorer.score_one(Sample("sst2", "0", "p", target="positive"), answer)
    assert verdict.status == status and verdict.score == score


def test_utility_and_safety_in_one_run(tiny_model, data_dir, tmp_path):
    cfg = ScoreConfig(
        model=str(tiny_model),
        tasks=["sst2", "smoke"],
        limit=10,
        max_new_tokens=4,
        data_dir=data_dir,
        store=tmp_path / "s.sqlite",
        out=tmp_path / "run",
    )
    res = score(cfg)
    sst2 = res.metrics["sst2"]["sst2"]
    assert sst2["n"] == 10 and sst2["accuracy"]["n"] == 10  # no answer counts as wrong, inside the denominator
    assert sst2["no_answer"] <= 10 and "keyword" not in res.metrics["sst2"]
    assert "keyword" in res.metrics["smoke"] and "sst2" in res.scorers
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert all(list(r["verdicts"]) == (["sst2"] if r["task"] == "sst2" else ["keyword"]) for r in rows)
    assert score(cfg).counts["judged_now"] == 0  # scorer verdicts come from the store too


def test_a_utility_only_run_builds_no_judge(tiny_model, data_dir, tmp_path):
    # llama-guard's model is not available here; a run without safety tasks must not need it.
    res = score(
        ScoreConfig(
            model=str(tiny_model),
            tasks=["sst2"],
            judges=["llama-guard"],
            limit=3,
            max_new_tokens=2,
            data_dir=data_dir,
            store=tmp_path / "s.sqlite",
            out=tmp_path / "run",
        )
    )
    assert res.judges == {} and res.metrics["sst2"]["sst2"]["n"] == 3


def test_a_utility_spec_must_name_its_scorer(tmp_path):
    (tmp_path / "u.yaml").write_text("name: u\nkind: utility\ninline: [{q: x}]\nprompt: '{{ q }}'\n")
    with pytest.raises(SafeevalError, match="name its 'scorer'"):
        registry.load_tasks([tmp_path])
    (tmp_path / "u.yaml").write_text("name: u\nkind: utility\nscorer: bleu\ninline: [{q: x}]\nprompt: '{{ q }}'\n")
    with pytest.raises(SafeevalError, match="Known scorers: gsm8k, sst2"):
        make_scorer(registry.load_tasks([tmp_path])["u"])


def test_answer_tokens_raise_the_run_budget_for_that_task_only(tiny_model, data_dir, tmp_path):
    (tmp_path / "long.yaml").write_text(
        "name: long\nkind: utility\nscorer: sst2\nanswer_tokens: 12\nprompt: 'Say {{ q }}'\ntarget: positive\n"
        "inline: [{q: one}, {q: two}, {q: three}]\n"
    )
    cfg = ScoreConfig(
        model=str(tiny_model),
        tasks=["long", "smoke"],
        limit=3,
        max_new_tokens=4,
        data_dir=data_dir,
        tasks_dirs=[tmp_path],
        store=tmp_path / "s.sqlite",
        out=tmp_path / "run",
    )
    res = score(cfg)
    assert res.generation["max_new_tokens"] == 4 and res.generation["answer_tokens"] == {"long": 12}
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    long_rows = [r for r in rows if r["task"] == "long"]
    assert len(long_rows) == 3 and max(r["n_tokens"] for r in long_rows) > 4  # the random model never stops early
    assert all(r["n_tokens"] <= 12 for r in long_rows) and all(r["n_tokens"] <= 4 for r in rows if r["task"] == "smoke")
    assert score(cfg).counts["generated_now"] == 0  # each setting's generations come back from the store
    # a run asking for more than the task needs keeps its own budget, and records nothing raised
    assert (
        "answer_tokens"
        not in score(ScoreConfig(**{**cfg.__dict__, "max_new_tokens": 16, "out": tmp_path / "run2"})).generation
    )
