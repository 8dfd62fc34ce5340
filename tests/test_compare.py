"""`safeeval compare` and the significance marks of the leaderboard and the HTML report, on run folders written
as a user's disk holds them, with known answers: an identical method, a planted loss of safety, a planted
equivalence of utility, seeds without a reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_files import write_run
from typer.testing import CliRunner

from safeeval import metrics, results
from safeeval.cli import app
from safeeval.errors import SafeevalError
from safeeval.report import leaderboard as lb
from safeeval.report.compare import compare
from safeeval.report.html import render_html
from safeeval.report.runs import load_runs

N = 120  # harmful prompts per run
N_BENIGN = 40
N_UTIL = 200


def write(
    folder: Path,
    method: str,
    seed: int,
    *,
    asr_every: int = 4,
    refused: int = 4,
    correct: int = 150,
    scenario: str = "benign",
    task: str = "sst2",
    benign_task: bool = False,
) -> Path:
    """advbench: prompt i is attacked when i % asr_every == 0 (plus a seed-specific one); 40 benign prompts, the
    first `refused` refused; gsm8k: the first `correct` of 200 answered right."""
    rows, verdicts, harmful = [], [], []
    for i in range(N):
        hit = i % asr_every == 0 or i == 1 + 2 * seed  # an odd prompt of its own per seed
        v = {"harmful": hit, "refused": not hit, "status": "ok"}
        rows.append({"task": "advbench", "id": f"a-{i}", "harmful": True, "verdicts": {"keyword": v}})
        verdicts.append(v), harmful.append(True)
    for i in range(N_BENIGN):
        v = {"harmful": False, "refused": i < refused, "status": "ok"}
        rows.append({"task": "advbench", "id": f"b-{i}", "harmful": False, "verdicts": {"keyword": v}})
        verdicts.append(v), harmful.append(False)
    util = []
    for i in range(N_UTIL):
        v = {"harmful": None, "refused": None, "status": "ok", "score": 1.0 if i < correct else 0.0}
        rows.append({"task": "gsm8k", "id": f"g-{i}", "harmful": False, "verdicts": {"gsm8k": v}})
        util.append(v)
    metrics_of = {
        "advbench": {"keyword": metrics.verdict_summary(verdicts, harmful, {}, seed)},
        "gsm8k": {"gsm8k": metrics.utility_summary(util, seed)},
    }
    if benign_task:  # benign prompts only, as Self-Instruct: an ASR block with n = 0 beside the refusal rate
        only = [{"harmful": False, "refused": i < refused, "status": "ok"} for i in range(N_BENIGN)]
        rows += [
            {"task": "selfinstruct", "id": f"s-{i}", "harmful": False, "verdicts": {"keyword": v}}
            for i, v in enumerate(only)
        ]
        metrics_of["selfinstruct"] = {"keyword": metrics.verdict_summary(only, [False] * N_BENIGN, {}, seed)}
    summary = {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": "tiny", "backend": "hf"},
        "seed": seed,
        "training": {"method": method, "scenario": scenario, "seed": seed, "task": task},
        "metrics": metrics_of,
    }
    return write_run(folder, summary, rows)


@pytest.fixture
def study(tmp_path) -> list[Path]:
    dirs = []
    for seed in (0, 1, 2):
        dirs.append(write(tmp_path / f"sft-{seed}", "sft", seed))
        dirs.append(write(tmp_path / f"same-{seed}", "same", seed))  # identical to sft: nothing to find
        dirs.append(write(tmp_path / f"bad-{seed}", "bad", seed, asr_every=2, refused=20))  # safety planted lost
    dirs.append(write(tmp_path / "aligned", "align (er)", 0, asr_every=30, scenario="-", task="-"))
    return dirs


def test_a_task_of_benign_prompts_only_is_compared_on_refusal_not_asr(tmp_path):
    runs = [
        write(tmp_path / "sft", "sft", 0, benign_task=True),
        write(tmp_path / "more", "more", 0, refused=30, benign_task=True),
    ]
    found = {(c.task, c.key): c.family.differences[0] for c in compare(load_runs(runs), "sft")}
    assert ("selfinstruct", "asr") not in found
    assert found[("selfinstruct", "benign_refusal_rate")].significant  # 30 of 40 refused against 4 of 40


def test_compare_finds_the_planted_loss_and_only_it(study):
    found = compare(load_runs(study), "sft", margins={"gsm8k": 0.01})
    by = {(c.task, c.key): c for c in found}
    assert set(by) == {("advbench", "asr"), ("advbench", "benign_refusal_rate"), ("gsm8k", "accuracy")}
    asr = {d.name: d for d in by[("advbench", "asr")].family.differences}
    # bad: prompts i % 4 == 2 are attacked too, 30 per seed; same: nothing moves
    assert asr["bad"].difference == pytest.approx(30 / N) and asr["bad"].test.n_up == 90 and asr["bad"].significant
    assert asr["same"].difference == 0 and not asr["same"].significant and asr["same"].p_holm == 1.0
    assert by[("advbench", "asr")].family.statement.startswith("Holm correction over the 2 comparison(s) against sft")
    util = {d.name: d for d in by[("gsm8k", "accuracy")].family.differences}
    assert util["same"].margin.result == "shown"  # a planted equivalence, within 1 point
    assert all(c.stratum == "sst2 · benign" for c in found)


def test_compare_cli_prints_each_family_and_its_verdicts(study):
    runner = CliRunner()
    got = runner.invoke(app, ["compare", *map(str, study), "--against", "sft", "--margin", "gsm8k=1"])
    assert got.exit_code == 0, got.output
    out = got.output
    assert "sst2 · benign: advbench/keyword ASR against sft" in out
    assert "Holm correction over the 2 comparison(s) against sft on advbench/keyword ASR (same, bad)" in out
    assert "yes *" in out and "shown (1 pt)" in out
    data = json.loads(runner.invoke(app, ["compare", *map(str, study), "--against", "sft", "--format", "json"]).output)
    asr = next(c for c in data if c["metric"] == "asr")
    assert [(d["method"], d["significant"]) for d in asr["differences"]] == [("same", False), ("bad", True)]
    assert asr["differences"][1]["p_holm"] < 1e-4 and asr["differences"][1]["ci_low"] > 0
    # against a run: the aligned model serves every seed of every method
    got = runner.invoke(
        app, ["compare", *map(str, study), "--against", str(study[-1]), "--tasks", "advbench", "--format", "json"]
    )
    assert got.exit_code == 0, got.output
    asr = next(c for c in json.loads(got.output) if c["metric"] == "asr")
    assert {d["method"] for d in asr["differences"]} == {"sft", "same", "bad"}
    assert all(d["significant"] for d in asr["differences"]) and asr["reference"] == "align (er)"


def test_compare_says_what_it_cannot_do(study, tmp_path):
    runner = CliRunner()
    for args, said in [
        (["--against", "sft", "--margin", "gsm8k"], "is not TASK=POINTS"),
        (["--against", "sft", "--margin", "math=1"], "--margin names math, which no comparison has"),
        (["--against", "nobody"], "is neither a run folder nor part of any run's label"),
    ]:
        got = runner.invoke(app, ["compare", *map(str, study), *args])
        assert got.exit_code == 2 and said in got.output, got.output
    # a method whose seeds have no reference of the same seed is left out, and said so
    extra = write(tmp_path / "late-5", "late", 5)
    found = compare(load_runs([*study, extra]), "sft")
    asr = next(c for c in found if c.key == "asr")
    assert "late" not in {d.name for d in asr.family.differences}
    assert any("late seed 5 has no reference run of the same seed" in n for n in asr.notes)
    with pytest.raises(SafeevalError, match="no method could be paired"):
        compare(load_runs([study[0], study[3], extra]), "sft")  # sft seeds 0 and 1; one sft run would serve all


def test_leaderboard_and_report_mark_significant_deltas(study):
    runs = load_runs(study[:-1])
    board = lb.build(runs, group_by=["method"], baseline="sft")
    rows = {r.label: r for r in board.rows}
    assert rows["bad"].significant["advbench/keyword ASR"]["significant"]
    assert not rows["same"].significant["advbench/keyword ASR"]["significant"]
    assert rows["bad"].significant["advbench/keyword benign refusal"]["significant"]
    md = lb.render_markdown(board)
    bad = next(line for line in md.splitlines() if line.startswith("| bad |"))
    assert bad.count("\\*") == 2  # ASR and benign refusal; accuracy is unchanged
    assert "\\* Δ significant at Holm-adjusted p < 0.05" in md
    text = lb.render_text(board, 120)
    assert "+25.0 *" in text and "+40.0 *" in text
    data = json.loads(lb.render_json(board))
    assert data["rows"][2]["significance"]["advbench/keyword ASR"]["p_holm"] < 1e-4
    # the HTML report tests each run against the baseline run
    page = render_html(runs, next(r for r in runs if r.method == "sft" and r.seed == 0))
    assert page.count('class="sig"') == 3 * 2  # the three bad runs, on ASR and benign refusal
