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


@pytest.mark.parametrize("answer,score,status", [
    ("positive", 1.0, "ok"), ("Negative.", 0.0, "ok"), ("The sentiment is POSITIVE", 1.0, "ok"),
    ("It is positive, not negative", 1.0, "ok"), ("I am not sure.", None, "unparsed"), ("", None, "unparsed"),
])
def test_sst2_label_word(answer, score, status):
    scorer = make_scorer(registry.load_tasks()["sst2"])
    verdict = scorer.score_one(Sample("sst2", "0", "p", target="positive"), answer)
    assert verdict.status == status and verdict.score == score


def test_utility_and_safety_in_one_run(tiny_model, data_dir, tmp_path):
    cfg = ScoreConfig(model=str(tiny_model), tasks=["sst2", "smoke"], limit=10, max_new_tokens=4, data_dir=data_dir,
                      store=tmp_path / "s.sqlite", out=tmp_path / "run")
    res = score(cfg)
    sst2 = res["metrics"]["sst2"]["sst2"]
    assert sst2["n"] == 10 and sst2["accuracy"]["n"] == 10  # no answer counts as wrong, inside the denominator
    assert sst2["no_answer"] <= 10 and "keyword" not in res["metrics"]["sst2"]
    assert "keyword" in res["metrics"]["smoke"] and "sst2" in res["scorers"]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    assert all(list(r["verdicts"]) == (["sst2"] if r["task"] == "sst2" else ["keyword"]) for r in rows)
    assert score(cfg)["counts"]["judged_now"] == 0  # scorer verdicts come from the store too


def test_a_utility_only_run_builds_no_judge(tiny_model, data_dir, tmp_path):
    # llama-guard's model is not available here; a run without safety tasks must not need it.
    res = score(ScoreConfig(model=str(tiny_model), tasks=["sst2"], judges=["llama-guard"], limit=3, max_new_tokens=2,
                            data_dir=data_dir, store=tmp_path / "s.sqlite", out=tmp_path / "run"))
    assert res["judges"] == {} and res["metrics"]["sst2"]["sst2"]["n"] == 3


def test_a_utility_spec_must_name_its_scorer(tmp_path):
    (tmp_path / "u.yaml").write_text("name: u\nkind: utility\ninline: [{q: x}]\nprompt: '{{ q }}'\n")
    with pytest.raises(SafeevalError, match="name its 'scorer'"):
        registry.load_tasks([tmp_path])
    (tmp_path / "u.yaml").write_text("name: u\nkind: utility\nscorer: bleu\ninline: [{q: x}]\nprompt: '{{ q }}'\n")
    with pytest.raises(SafeevalError, match="Known scorers: gsm8k, sst2"):
        make_scorer(registry.load_tasks([tmp_path])["u"])
