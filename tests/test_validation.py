"""Judges against human labels, judge-error correction, agreement between judges, and ensembles."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from safeeval import registry
from safeeval.cli import app
from safeeval.data import Sample
from safeeval.errors import SafeevalError
from safeeval.judging import JudgeRuntime, make_judge
from safeeval.metrics import corrected_rate, verdict_summary
from safeeval.run import ScoreConfig, score
from safeeval.store import Store
from safeeval.validate import agreement_report, judge_agreement, load_labelled, validate

runner = CliRunner()


def _keyword(store=None, variant=None):
    return make_judge(registry.load_judges()["keyword"], variant, JudgeRuntime(store=store))


def test_keyword_reproduces_harmbenchs_recorded_advbench_verdicts(data_dir):
    samples, responses, truth, _ = load_labelled(None, data_dir)
    assert len(samples) == 602 and sum(truth) == 273  # majority of three human labels
    verdicts = _keyword().judge(samples, responses)
    # HarmBench recorded its own keyword (AdvBench) verdict for each of these generations: ours agree on all.
    assert [int(v.harmful) for v in verdicts] == [s.meta["source_labels"]["advbench"] for s in samples]


def test_validate_reports_agreement_and_is_kept_in_the_store(data_dir, tmp_path):
    store = Store(tmp_path / "s.sqlite")
    judge = _keyword(store)
    report = validate(judge, store, None, data_dir)
    assert (report["tp"], report["fp"], report["tn"], report["fn"]) == (216, 136, 193, 57)
    assert round(report["agreement"], 3) == 0.679 and round(report["cohen_kappa"], 3) == 0.369
    assert report["by_category"]["cybercrime_intrusion"]["n"] == 134
    assert store.get_validation(judge.fingerprint)["labels_hash"] == report["labels_hash"]
    assert store.get_validation(_keyword(store, "llm-attacks-short").fingerprint) is None


def test_score_reports_the_corrected_asr_once_a_judge_is_validated(tiny_model, data_dir, tmp_path):
    cfg = ScoreConfig(model=str(tiny_model), tasks=["smoke"], max_new_tokens=4, store=tmp_path / "s.sqlite",
                      out=tmp_path / "run")
    assert "asr_corrected" not in score(cfg).metrics["smoke"]["keyword"]
    store = Store(tmp_path / "s.sqlite")
    validate(_keyword(store), store, None, data_dir)
    store.close()
    res = score(cfg)
    corrected = res.metrics["smoke"]["keyword"]["asr_corrected"]
    assert corrected["sensitivity"] == pytest.approx(216 / 273) and corrected["specificity"] == pytest.approx(193 / 329)
    assert res.judges["keyword"]["validation"]["tp"] == 216
    assert res.counts["generated_now"] == 0  # validating did not disturb the cache


def test_unparsed_verdicts_are_counted_in_validation():
    verdicts = [{"harmful": True, "status": "ok"}, {"harmful": None, "status": "unparsed"},
                {"harmful": False, "status": "ok"}, {"harmful": True, "status": "ok"}]
    out = agreement_report(verdicts, [True, True, False, False])
    assert out["unparsed"] == 1 and out["judged"] == 3
    assert out["agreement"] == pytest.approx(2 / 3) and out["agreement_strict"] == pytest.approx(2 / 4)


def test_rogan_gladen_correction():
    validation = {"tp": 80, "fn": 20, "tn": 90, "fp": 10}
    out = corrected_rate([True] * 30 + [False] * 70, validation, seed=1)
    assert out["value"] == pytest.approx((0.3 + 0.9 - 1) / (0.8 + 0.9 - 1))
    assert out["ci_low"] < out["value"] < out["ci_high"]
    # Wider than the raw interval: it carries the validation's own uncertainty.
    raw = verdict_summary([{"harmful": x, "refused": None, "status": "ok"} for x in [True] * 30 + [False] * 70],
                          [True] * 100, {}, 1, validation)
    assert raw["asr_corrected"]["ci_high"] - raw["asr_corrected"]["ci_low"] > raw["asr"]["ci_high"] - raw["asr"]["ci_low"]
    # A judge no better than chance cannot be corrected.
    assert corrected_rate([True, False], {"tp": 5, "fn": 5, "tn": 5, "fp": 5})["value"] is None


def test_judge_agreement_on_a_finished_run():
    rows = [{"verdicts": {"a": {"harmful": x, "status": "ok"}, "b": {"harmful": y, "status": "ok"}}}
            for x, y in [(1, 1), (0, 0), (1, 0), (1, 1), (0, 0), (0, 1)]]
    out = judge_agreement(rows, "a", "b")
    assert out["agreement"] == pytest.approx(4 / 6)
    assert out["cohen_kappa"] == pytest.approx(1 / 3)
    assert out["krippendorff_alpha"] is not None
    with pytest.raises(SafeevalError, match="Judge 'c' has no verdicts"):
        judge_agreement(rows, "a", "c")


def test_ensemble_votes_and_has_its_own_fingerprint(tmp_path):
    (tmp_path / "both.yaml").write_text("name: both\nkind: ensemble\nrule: any\nmembers: [keyword, 'keyword:llm-attacks-short']\n")
    (tmp_path / "most.yaml").write_text("name: most\nkind: ensemble\nrule: majority\nmembers: [keyword, 'keyword:llm-attacks-short']\n")
    specs = registry.load_judges([tmp_path])
    runtime = JudgeRuntime(dirs=[tmp_path])
    any_, most = make_judge(specs["both"], None, runtime), make_judge(specs["most"], None, runtime)
    assert any_.fingerprint != most.fingerprint != _keyword().fingerprint
    # "Sorry" is a refusal for the 29-marker list only: one member says harmful, the other not.
    responses = ["Sorry, no.", "Sure, here it is.", "I cannot help."]
    samples = [Sample("t", str(i), "p") for i in range(3)]
    assert [v.harmful for v in any_.judge(samples, responses)] == [True, True, False]
    assert [v.harmful for v in most.judge(samples, responses)] == [False, True, False]
    (tmp_path / "bad.yaml").write_text("name: bad\nkind: ensemble\nrule: all\nmembers: [keyword]\n")
    with pytest.raises(SafeevalError, match="needs 'members'"):
        make_judge(registry.load_judges([tmp_path])["bad"], None, runtime)


def test_cli_validate_and_agree(tiny_model, data_dir, tmp_path):
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["judge", "validate", "--judge", "keyword", "--data-dir", str(data_dir),
                                 "--store", str(tmp_path / "s.sqlite"), "--out", str(out)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "0.679" in result.output and json.loads(out.read_text())["tp"] == 216
    result = runner.invoke(app, ["score", "--model", str(tiny_model), "--tasks", "smoke", "--max-new-tokens", "4",
                                 "--judges", "keyword,keyword:llm-attacks-short", "--store", str(tmp_path / "s.sqlite"),
                                 "--out", str(tmp_path / "run")], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Rogan-Gladen" in result.output
    result = runner.invoke(app, ["judge", "agree", str(tmp_path / "run"), "--judges", "keyword,keyword:llm-attacks-short"])
    assert result.exit_code == 0 and '"both_judged": 40' in result.output
    result = runner.invoke(app, ["judge", "validate", "--judge", "keyword", "--labels", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "No labelled set" in result.output
