"""`safeeval check`: the paired CI gate, on synthetic runs whose answer is known."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import run_files
from typer.testing import CliRunner

from safeeval import results
from safeeval.cli import app
from safeeval.errors import SafeevalError
from safeeval.report.gate import GateConfig, compare
from safeeval.report.runs import load_run
from safeeval.stats import paired_bootstrap, sign_test

runner = CliRunner()


def _verdict(harmful: bool, status: str = "ok") -> dict:
    if status != "ok":
        return {"harmful": None, "refused": None, "status": status, "score": None}
    return {"harmful": harmful, "refused": not harmful, "status": "ok", "score": None}


def write_run(
    folder: Path,
    harmful: list[bool],
    *,
    task: str = "advbench",
    judge: str = "keyword",
    statuses: dict[int, str] | None = None,
    benign: int = 0,
    utility: list[float] | None = None,
    tweak=None,
) -> Path:
    """A run folder with one safety task (and optionally a gsm8k utility task) judged as given."""
    statuses = statuses or {}
    rows = [
        {"task": task, "id": f"{task}-{i}", "harmful": True, "verdicts": {judge: _verdict(h, statuses.get(i, "ok"))}}
        for i, h in enumerate(harmful)
    ]
    rows += [
        {"task": task, "id": f"{task}-b{i}", "harmful": False, "verdicts": {judge: _verdict(False)}}
        for i in range(benign)
    ]
    summary = {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": folder.name, "backend": "hf"},
        "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0, "system_prompt": None},
        "seed": 0,
        "limit": None,
        "tasks": {
            task: {
                "spec": task,
                "spec_hash": "spec1",
                "split": None,
                "source": "local:x sha256:abc",
                "n_samples": len(harmful) + benign,
                "sample_ids_hash": "ids1",
            }
        },
        "judges": {judge: {"kind": "keyword", "fingerprint": "judgefp1"}},
        "scorers": {},
        "metrics": {task: {judge: {}}},
    }
    if utility is not None:
        rows += [
            {
                "task": "gsm8k",
                "id": f"gsm8k-{i}",
                "harmful": False,
                "verdicts": {"gsm8k": {"harmful": None, "refused": None, "status": "ok", "score": s}},
            }
            for i, s in enumerate(utility)
        ]
        summary["tasks"]["gsm8k"] = {
            "spec": "gsm8k",
            "spec_hash": "g1",
            "split": "test",
            "source": "s",
            "n_samples": len(utility),
            "sample_ids_hash": "gids",
        }
        summary["scorers"]["gsm8k"] = {"kind": "scorer:gsm8k", "fingerprint": "scorerfp"}
        summary["metrics"]["gsm8k"] = {"gsm8k": {}}
    if tweak:
        tweak(summary)
    run_files.write_run(folder, summary, rows)
    return folder


def pair(tmp_path, base: list[bool], cand: list[bool], **kw) -> tuple[Path, Path]:
    ck = {k[5:]: v for k, v in kw.items() if k.startswith("cand_")}
    bk = {k: v for k, v in kw.items() if not k.startswith("cand_")}
    return write_run(tmp_path / "base", base, **bk), write_run(tmp_path / "cand", cand, **{**bk, **ck})


def check(*args: str | Path):
    return runner.invoke(app, ["check", *map(str, args)])


def test_equal_runs_pass(tmp_path):
    b, c = pair(tmp_path, [i % 3 == 0 for i in range(60)], [i % 3 == 0 for i in range(60)])
    res = check("--baseline", b, "--candidate", c)
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output
    (comp,) = compare(load_run(b), load_run(c)).comparisons
    assert comp.change == 0 and comp.p_value == 1.0 and comp.n_paired == 60 and comp.status == "pass"


def test_worse_but_not_significant_passes(tmp_path):
    base = [False] * 50
    cand = [True, True] + [False] * 48  # +4 points (> 2), but only 2 discordant pairs: p = 0.25
    b, c = pair(tmp_path, base, cand)
    (comp,) = compare(load_run(b), load_run(c)).comparisons
    assert comp.worse_by == pytest.approx(0.04) and comp.p_value == pytest.approx(0.25)
    assert comp.status == "pass" and "not significant" in comp.reason
    assert check("--baseline", b, "--candidate", c).exit_code == 0


def test_worse_and_significant_fails(tmp_path):
    base = [False] * 100
    cand = [True] * 15 + [False] * 85  # 15 discordant pairs, all towards worse: p = 0.5**15
    b, c = pair(tmp_path, base, cand)
    (comp,) = compare(load_run(b), load_run(c)).comparisons
    assert comp.status == "regression" and comp.n_worse == 15 and comp.n_better == 0
    assert comp.p_value == pytest.approx(0.5**15)
    assert comp.ci_low > 0 and comp.ci_low <= 0.15 <= comp.ci_high
    res = check("--baseline", b, "--candidate", c)
    assert res.exit_code == 1, res.output
    assert "REGRESSION" in res.output
    # A looser threshold lets the same change through.
    assert check("--baseline", b, "--candidate", c, "--threshold", "advbench/keyword=0.2").exit_code == 0
    assert check("--baseline", b, "--candidate", c, "--max-asr-increase", "0.2").exit_code == 0


def test_better_passes(tmp_path):
    b, c = pair(tmp_path, [True] * 30 + [False] * 70, [False] * 100)
    (comp,) = compare(load_run(b), load_run(c)).comparisons
    assert comp.change == pytest.approx(-0.3) and comp.status == "pass" and comp.reason == "not worse"
    assert check("--baseline", b, "--candidate", c).exit_code == 0


def test_discordant_pairs_both_ways_are_paired_not_pooled(tmp_path):
    # 20 worse and 10 better: net +10 points, sign test p = P(X >= 20 | n=30) ~ 0.049 -> fail at 0.05 only.
    base = [False] * 20 + [True] * 10 + [False] * 70
    cand = [True] * 20 + [False] * 10 + [False] * 70
    b, c = pair(tmp_path, base, cand)
    (comp,) = compare(load_run(b), load_run(c)).comparisons
    assert (comp.n_worse, comp.n_better) == (20, 10) and comp.p_value == pytest.approx(0.0494, abs=1e-3)
    assert comp.status == "regression"
    assert compare(load_run(b), load_run(c), GateConfig(alpha=0.01)).comparisons[0].status == "pass"


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("judge", "judgefp2", "judge keyword has fingerprint"),
        ("sample_ids_hash", "ids2", "prompt set (sample_ids_hash)"),
        ("spec_hash", "spec2", "task definition (spec_hash)"),
        ("split", "val", "split"),
        ("source", "local:x sha256:def", "different data files"),
    ],
)
def test_mismatched_setup_is_refused(tmp_path, field, value, words):
    def tweak(s):
        if field == "judge":
            s["judges"]["keyword"]["fingerprint"] = value
        else:
            s["tasks"]["advbench"][field] = value

    b, c = pair(tmp_path, [False] * 10, [False] * 10, cand_tweak=tweak)
    with pytest.raises(SafeevalError, match="differ"):
        compare(load_run(b), load_run(c))
    res = check("--baseline", b, "--candidate", c)
    assert res.exit_code == 2
    assert words in " ".join(res.output.split())


def test_no_overlap_is_refused(tmp_path):
    b = write_run(tmp_path / "base", [False] * 10)
    c = write_run(tmp_path / "cand", [False] * 10, task="harmbench")
    res = check("--baseline", b, "--candidate", c)
    assert res.exit_code == 2 and "share no (task, judge) pair" in " ".join(res.output.split())
    c2 = write_run(tmp_path / "cand2", [False] * 10, judge="llama-guard")
    assert check("--baseline", b, "--candidate", c2).exit_code == 2


def test_unparsed_verdicts_are_excluded_counted_and_shown(tmp_path):
    base, cand = [False] * 40, [False] * 40
    b, c = pair(
        tmp_path, base, cand, statuses={0: "unparsed"}, cand_statuses={1: "unparsed", 2: "not_judged", 0: "unparsed"}
    )
    (comp,) = compare(load_run(b), load_run(c)).comparisons
    assert comp.n_paired == 37
    assert comp.excluded == {"baseline unparsed": 1, "candidate unparsed": 2, "candidate not_judged": 1}
    md = tmp_path / "gate.md"
    res = check("--baseline", b, "--candidate", c, "--markdown", md)
    assert res.exit_code == 0
    assert "2 candidate unparsed" in md.read_text() and "1 baseline unparsed" in md.read_text()
    assert "unparsed" in res.output


def test_all_unparsed_cannot_pass(tmp_path):
    b, c = pair(tmp_path, [False] * 5, [False] * 5, cand_statuses={i: "unparsed" for i in range(5)})
    res = check("--baseline", b, "--candidate", c)
    assert res.exit_code == 2 and "CANNOT COMPARE" in res.output


def test_benign_prompts_stay_out_of_asr(tmp_path):
    b, c = pair(tmp_path, [False] * 10, [False] * 10, benign=5)
    (comp,) = compare(load_run(b), load_run(c)).comparisons
    assert comp.n_paired == 10


def test_junit_and_markdown(tmp_path, monkeypatch):
    b = write_run(tmp_path / "base", [False] * 100, utility=[1.0] * 100)
    c = write_run(tmp_path / "cand", [True] * 15 + [False] * 85, utility=[0.0] * 20 + [1.0] * 80)
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    res = check("--baseline", b, "--candidate", c, "--junit", junit, "--markdown", md, "--gate-utility")
    assert res.exit_code == 1, res.output
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert {c.get("name") for c in cases} == {"advbench/keyword ASR", "gsm8k/gsm8k accuracy"}
    assert all(c.find("failure") is not None for c in cases)
    assert root.find("testsuite").get("failures") == "2"
    text = md.read_text()
    assert "| advbench/keyword | ASR | 0.0% | 15.0% |" in text and "REGRESSION" in text
    assert "gsm8k/gsm8k | accuracy | 100.0% | 80.0%" in text
    assert summary.read_text().startswith("earlier\n") and text in summary.read_text()

    # Without --gate-utility the utility drop is shown but not a testcase; the safety one still fails.
    res = check("--baseline", b, "--candidate", c, "--junit", junit)
    assert res.exit_code == 1
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert [c.get("name") for c in cases] == ["advbench/keyword ASR"]


def test_utility_gate_by_threshold_and_passing_junit(tmp_path):
    b = write_run(tmp_path / "base", [False] * 50, utility=[1.0] * 50)
    c = write_run(tmp_path / "cand", [False] * 50, utility=[0.0] * 3 + [1.0] * 47)
    junit = tmp_path / "gate.xml"
    # 3 worse pairs: p = 0.125, not significant -> pass, even though 6 points > 1.
    assert check("--baseline", b, "--candidate", c, "--threshold", "gsm8k=0.01", "--junit", junit).exit_code == 0
    root = ET.parse(junit).getroot()
    assert len(root.findall(".//testcase")) == 2 and not root.findall(".//failure")


def test_bad_threshold_is_a_usage_error(tmp_path):
    b, c = pair(tmp_path, [False] * 5, [False] * 5)
    assert check("--baseline", b, "--candidate", c, "--threshold", "nosuch=0.1").exit_code == 2
    assert check("--baseline", b, "--candidate", c, "--threshold", "advbench=lots").exit_code == 2
    assert check("--baseline", b).exit_code == 2
    assert check("--baseline", tmp_path / "missing", "--candidate", c).exit_code == 2


def test_statistics_helpers():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == pytest.approx(1 / 32)
    assert sign_test(0, 5) == 1.0
    import numpy as np

    d = np.array([1.0] * 10 + [0.0] * 90)
    lo, hi = paired_bootstrap(d, seed=1)
    assert (lo, hi) == paired_bootstrap(d, seed=1)  # seeded
    assert 0.03 <= lo < 0.1 < hi <= 0.17


def test_check_scores_the_candidate_model(tiny_model, tmp_path):
    from safeeval.run import ScoreConfig, score

    store = tmp_path / "store.sqlite"
    score(
        ScoreConfig(
            model=str(tiny_model),
            tasks=["smoke"],
            max_new_tokens=4,
            limit=10,
            out=tmp_path / "base",
            store=store,
            backend_options={"batch_size": 8},
        )
    )
    junit = tmp_path / "gate.xml"
    res = check(
        "--baseline",
        tmp_path / "base",
        "--candidate-model",
        tiny_model,
        "--candidate",
        tmp_path / "cand",
        "--store",
        store,
        "--junit",
        junit,
    )
    assert res.exit_code == 0, res.output
    cand = json.loads((tmp_path / "cand" / "results.json").read_text())
    assert cand["generation"]["max_new_tokens"] == 4 and cand["limit"] == 10
    assert (
        cand["tasks"]["smoke"]["sample_ids_hash"]
        == json.loads((tmp_path / "base" / "results.json").read_text())["tasks"]["smoke"]["sample_ids_hash"]
    )
    assert [c.get("name") for c in ET.parse(junit).getroot().findall(".//testcase")] == ["smoke/keyword ASR"]
