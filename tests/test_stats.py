"""Paired significance across seeds, on cases whose answer is known: identical runs, a planted difference,
seeds that disagree, a planted equivalence and an underpowered one; CMH and Holm against statsmodels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import require_module
from run_files import write_run

from safeeval import results, stats
from safeeval.report.runs import load_run
from safeeval.report.significance import compare_runs, paired_values
from safeeval.results import SampleRecord


def planted(n: int, base_rate: float, up: float, down: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n paired 0/1 outcomes: the reference at base_rate; the other moves a reference 0 up to 1 with probability
    `up` and a reference 1 down to 0 with probability `down`."""
    rng = np.random.default_rng(seed)
    ref = (rng.random(n) < base_rate).astype(float)
    move = rng.random(n)
    other = np.where(ref == 0, (move < up).astype(float), (move >= down).astype(float))
    return ref, other


def test_identical_runs_show_no_difference():
    strata = [planted(300, 0.4, 0, 0, s)[:1] * 2 for s in range(3)]
    fam = stats.compare_to_reference({"same": strata}, metric="advbench/keyword ASR", reference="sft", margin=0.01)
    (d,) = fam.differences
    assert d.difference == 0 and (d.ci_low, d.ci_high) == (0, 0)
    assert d.test.n_up == d.test.n_down == 0 and d.test.p_value == 1.0 and d.p_holm == 1.0 and not d.significant
    assert d.margin.result == "shown" and d.margin.p_value == 0.0


def test_a_planted_difference_is_detected_and_holm_adjusts_it():
    worse = [planted(400, 0.3, 0.25, 0.02, s) for s in range(3)]  # ASR up by about 0.25*0.7 - 0.02*0.3 = 0.17
    same = [planted(400, 0.3, 0.03, 0.07, 10 + s) for s in range(3)]  # about 0.021 - 0.021 = 0
    fam = stats.compare_to_reference(
        {"er": same, "sft-like": worse}, metric="advbench/keyword ASR", reference="aligned"
    )
    er, bad = fam.differences
    assert bad.significant and bad.test.p_value < 1e-10 and bad.test.method == "chi-square"
    assert bad.ci_low < 0.17 < bad.ci_high and bad.ci_low > 0.1
    assert not er.significant and er.ci_low < 0 < er.ci_high
    assert er.p_holm >= er.test.p_value and bad.p_holm >= bad.test.p_value
    assert "Holm" in fam.statement and "2 comparison" in fam.statement and "er, sft-like" in fam.statement
    assert not bad.seeds_disagree
    # the pooled difference is the mean over all pairs
    assert bad.difference == pytest.approx(np.mean(np.concatenate([o - r for r, o in worse])))


def test_seeds_that_disagree_are_not_pooled_into_a_claim():
    """Seed 0 is much worse than the reference, seed 1 as much better: each seed alone is significant, the
    stratified test is not, and the disagreement itself is reported."""
    ref = np.zeros(200)
    seed0 = (ref.copy(), np.r_[np.ones(30), np.zeros(170)])  # 30 prompts go up
    seed1 = (np.r_[np.ones(30), np.zeros(170)], ref.copy())  # 30 prompts go down
    for r, o in (seed0, seed1):
        up, down = stats.discordant(r, o)
        assert stats.binomial_p(up, up + down) < 1e-8
    fam = stats.compare_to_reference({"m": [seed0, seed1]}, metric="ASR", reference="sft")
    (d,) = fam.differences
    assert d.difference == 0 and d.test.p_value > 0.8 and not d.significant  # (|U-D| - 1)^2 / (U+D) = 1/60
    assert d.test.heterogeneity_p < 1e-10 and d.seeds_disagree
    assert [s["difference"] for s in d.per_seed] == [0.15, -0.15]


def test_a_planted_equivalence_passes_tost():
    """3 seeds x 1,500 GSM8K-like prompts, 4% of answers flip each way: no loss, so "under 1.2 points lost"."""
    strata = [planted(1500, 0.5, 0.04, 0.04, s) for s in range(3)]
    fam = stats.compare_to_reference(
        {"der": strata}, metric="gsm8k accuracy", reference="sft", worse="lower", margin=0.012
    )
    m = fam.differences[0].margin
    assert m.result == "shown" and m.kind == "non-inferiority" and m.p_value < 0.05
    assert -0.012 < m.ci_low and m.pairs_needed is None


def test_an_underpowered_margin_says_so():
    strata = [planted(60, 0.5, 0.1, 0.1, 3)]  # 60 prompts cannot bound a loss to 1.2 points (this draw: -1.7)
    (d,) = stats.compare_to_reference(
        {"der": strata}, metric="accuracy", reference="sft", worse="lower", margin=0.012
    ).differences
    assert d.margin.result == "underpowered" and d.margin.pairs_needed > 1000
    assert "pairs would be needed" in d.margin.reason


def test_a_loss_far_past_the_margin_is_not_shown_however_few_the_pairs():
    # 60 prompts give a wide interval, but all of it lies beyond the 1.2-point margin: more pairs cannot help it
    for kind in ("non-inferiority", "equivalence"):
        (d,) = stats.compare_to_reference(
            {"safelora": [planted(60, 0.8, 0.0, 0.6, 0)]},
            metric="accuracy",
            reference="sft",
            worse="lower",
            margin=0.012,
            margin_kind=kind,
        ).differences
        assert d.margin.ci_high < -0.012  # the whole interval is a loss of more than the margin
        assert (d.margin.result, d.margin.pairs_needed) == ("not shown", None)
        assert d.margin.reason == "the whole interval lies past the margin"


def test_a_real_loss_is_not_shown_equivalent():
    strata = [planted(3000, 0.5, 0.0, 0.1, 0)]  # accuracy down by about 5 points, measured precisely
    (d,) = stats.compare_to_reference(
        {"sft": strata}, metric="accuracy", reference="aligned", worse="lower", margin=0.012, margin_kind="equivalence"
    ).differences
    assert d.margin.result == "not shown" and d.margin.p_value > 0.5
    assert d.significant


def test_small_counts_use_the_exact_mid_p():
    got = stats.cmh_paired([(3, 0), (2, 0)])
    assert got.method == "exact mid-p"
    assert got.p_value == pytest.approx(stats.binomial_p(5, 5, mid_p=True)) == pytest.approx(2 * 0.5 / 32)
    assert stats.binomial_p(0, 5) == pytest.approx(2 / 32)
    assert stats.binomial_p(5, 5, "greater") == pytest.approx(1 / 32)
    assert stats.binomial_p(0, 0) == 1.0 and stats.binomial_p(2, 4) == 1.0
    assert stats.sign_test(5, 0) == pytest.approx(stats.binomial_p(5, 5, "greater"))


def test_cmh_matches_statsmodels():
    """Agresti's presidential-approval table (794, 150 / 86, 570), split over two seeds. The CMH test over the
    pairs (each pair its own 2x2 stratum) is McNemar's on the summed discordant pairs."""
    sm = require_module("statsmodels.stats.contingency_tables", "the test extra installs statsmodels")
    strata = [(90, 50), (60, 36)]  # (up, down) per seed: 150 and 86 in all
    got = stats.cmh_paired(strata)
    assert got.statistic == pytest.approx((abs(150 - 86) - 1) ** 2 / 236)  # 16.82
    ref = sm.mcnemar(np.array([[794, 150], [86, 570]]), exact=False, correction=True)
    assert got.statistic == pytest.approx(ref.statistic) and got.p_value == pytest.approx(ref.pvalue)
    # the same through statsmodels' CMH over one 2x2 table per pair (rows: reference/other, columns: 1/0)
    tables = [np.array([[0, 1], [1, 0]])] * 150 + [np.array([[1, 0], [0, 1]])] * 86
    tables += [np.array([[1, 0], [1, 0]])] * 20 + [np.array([[0, 1], [0, 1]])] * 20  # concordant pairs: no weight
    cmh = sm.StratifiedTable([t.astype(float) for t in tables]).test_null_odds(correction=True)
    assert got.statistic == pytest.approx(cmh.statistic) and got.p_value == pytest.approx(cmh.pvalue)
    assert got.odds_ratio == pytest.approx(150 / 86)
    exact = sm.mcnemar(np.array([[5, 9], [2, 5]]), exact=True)
    assert stats.binomial_p(9, 11) == pytest.approx(exact.pvalue)


def test_holm_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    multitest = require_module("statsmodels.stats.multitest", "the test extra installs statsmodels")
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = list(rng.random(7) ** 3)
        assert stats.holm(p) == pytest.approx(list(multitest.multipletests(p, method="holm")[1]))


def test_heterogeneity_needs_two_informative_seeds():
    assert stats.heterogeneity([(5, 2)]) is None
    assert stats.heterogeneity([(5, 0), (3, 0)]) is None  # every discordant pair moves up: no disagreement
    assert stats.heterogeneity([(20, 20), (21, 19)]) > 0.5


# ---------------------------------------------------------------- from run folders


def _run(folder: Path, seed: int, harmful: list[bool], refused_benign: list[bool], method: str) -> Path:
    rows = [
        {
            "task": "advbench",
            "id": f"a-{i}",
            "harmful": True,
            "verdicts": {"keyword": {"harmful": h, "refused": not h, "status": "ok"}},
        }
        for i, h in enumerate(harmful)
    ]
    rows += [
        {
            "task": "advbench",
            "id": f"b-{i}",
            "harmful": False,
            "verdicts": {"keyword": {"harmful": False, "refused": r, "status": "ok"}},
        }
        for i, r in enumerate(refused_benign)
    ]
    rows[0]["verdicts"]["keyword"] = {"harmful": None, "refused": None, "status": "unparsed"}
    summary = {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": folder.name},
        "seed": seed,
        "training": {"method": method, "seed": seed, "scenario": "benign", "task": "sst2"},
        "tasks": {"advbench": {}},
        "metrics": {},
    }
    return write_run(folder, summary, rows)


def test_compare_runs_pairs_seeds_and_counts_what_it_leaves_out(tmp_path):
    n = 120
    refs = [
        load_run(_run(tmp_path / f"sft{s}", s, [i % 4 == 0 for i in range(n)], [False] * 40, "sft")) for s in range(2)
    ]
    worse = [
        load_run(_run(tmp_path / f"bad{s}", s, [i % 2 == 0 for i in range(n)], [i < 10 for i in range(40)], "bad"))
        for s in range(2)
    ]
    fam, notes = compare_runs(refs, {"bad": worse}, "advbench", "keyword", "safety")
    (d,) = fam.differences
    assert d.n_pairs == 2 * (n - 1) and d.test.n_up == 2 * 30 and d.significant
    assert any("1 baseline unparsed" in note for note in notes)
    fam, _ = compare_runs(refs, {"bad": worse}, "advbench", "keyword", "refusal")
    (d,) = fam.differences
    assert fam.worse == "higher" and d.difference == pytest.approx(10 / 40) and d.n_pairs == 80
    # one reference run (the aligned model) serves every seed
    fam, _ = compare_runs(refs[:1], {"bad": worse}, "advbench", "keyword", "safety")
    assert fam.differences[0].n_pairs == 2 * (n - 1) and fam.reference == "sft"


def test_paired_values_refusal_skips_unknown_refusals():
    rows = {
        "1": {"harmful": False, "verdicts": {"j": {"refused": None, "status": "not_judged"}}},
        "2": {"harmful": False, "verdicts": {"j": {"refused": True, "status": "ok"}}},
        "3": {"harmful": True, "verdicts": {"j": {"refused": True, "status": "ok"}}},
    }
    records = {k: SampleRecord(task="t", id=k, **v) for k, v in rows.items()}
    b, c, excluded, unmatched = paired_values(records, dict(records), "j", "refusal")
    assert (b, c, unmatched) == ([1.0], [1.0], 0) and excluded == {
        "baseline refusal unknown": 1,
        "candidate refusal unknown": 1,
    }
