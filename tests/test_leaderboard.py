"""The leaderboard: runs as rows, metrics with CIs as columns, deltas, grouping, sorting, filtering, formats."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
from run_files import write_run
from typer.testing import CliRunner

from safeeval import results
from safeeval.cli import app
from safeeval.errors import SafeevalError
from safeeval.report import leaderboard as lb
from safeeval.report.runs import load_runs

MODELS = ("llama", "qwen")
METHODS = ("lora", "full")
SEEDS = (0, 1, 2)


def _rate(value: float, n: int = 200, half: float = 0.05) -> dict:
    return {"value": value, "ci_low": max(0.0, value - half), "ci_high": min(1.0, value + half), "n": n}


def asr_of(model: str, method: str, seed: int) -> float:
    return 0.10 + 0.20 * MODELS.index(model) + 0.10 * (METHODS.index(method) if method in METHODS else 0) + 0.01 * seed


def acc_of(model: str, method: str, seed: int) -> float:
    return 0.50 + 0.10 * MODELS.index(model) - 0.05 * METHODS.index(method) + 0.02 * seed


def results_dict(model: str, method: str, seed: int, *, scenario: str = "benign-ft", gsm8k: bool = True) -> dict:
    asr = asr_of(model, method, seed)
    metrics = {
        "advbench": {
            "keyword": {
                "n": 200,
                "asr": _rate(asr),
                "n_harmful": 200,
                "n_judged": 198,
                "not_judged": 2,
                "unparsed": 0,
                "harmful_score": _rate(asr * 0.9),
                "by": {"category": {"x": {"asr": _rate(asr)}}},
            }
        },
        "smoke": {
            "keyword": {
                "n": 40,
                "asr": _rate(asr + 0.05, 20),
                "benign_refusal_rate": _rate(0.1, 20),
                "n_benign": 20,
                "n_harmful": 20,
                "n_judged": 20,
                "not_judged": 0,
                "unparsed": 0,
            }
        },
    }
    if gsm8k:
        metrics["gsm8k"] = {
            "gsm8k": {
                "accuracy": _rate(acc_of(model, method, seed), 1000, 0.03),
                "n": 1000,
                "no_answer": 12,
                "not_scored": 0,
                "exact_match_strict": _rate(acc_of(model, method, seed) - 0.1, 1000, 0.03),
            }
        }
    return {
        "schema_version": results.SCHEMA_VERSION,
        "model": {"name": model, "backend": "hf"},
        "seed": seed,
        "training": {"method": method, "scenario": scenario, "seed": seed},
        "metrics": metrics,
    }


@pytest.fixture
def run_dirs(tmp_path):
    dirs = []
    for model in MODELS:
        for method in METHODS:
            for seed in SEEDS:
                out = tmp_path / "runs" / f"{model}-{method}-{seed}"
                write_run(out, results_dict(model, method, seed), [])
                dirs.append(out)
    base = tmp_path / "runs" / "llama-base"
    r = results_dict("llama", "none", 0, gsm8k=False)
    r["training"] = {"method": "base", "scenario": "-", "seed": 0}
    write_run(base, r, [])
    return dirs + [base]


@pytest.fixture
def runs(run_dirs):
    return load_runs(run_dirs)


def test_rows_and_columns(runs):
    board = lb.build(runs)
    assert len(board.rows) == 13
    assert [c.name for c in board.columns] == [
        "advbench/keyword ASR",
        "smoke/keyword ASR",
        "smoke/keyword benign refusal",
        "gsm8k accuracy",
    ]
    first = board.rows[0]
    assert first.label == "llama · lora · benign-ft · seed 0"
    cell = first.cells["advbench/keyword ASR"]
    assert (cell.value, cell.ci_low, cell.ci_high, cell.n) == (
        pytest.approx(0.1),
        pytest.approx(0.05),
        pytest.approx(0.15),
        200,
    )
    assert lb.cell_text(cell, board.columns[0]) == "10.0 [5.0, 15.0]"
    assert "gsm8k accuracy" not in board.rows[-1].cells  # the base run has no gsm8k


def test_choosing_columns(runs):
    every = lb.build(runs, metrics=["all"])
    names = {c.name for c in every.columns}
    assert {"advbench/keyword harmful score", "gsm8k exact_match_strict"} <= names
    assert "advbench/keyword n_judged" not in names and not any("by" in n.split() for n in names)
    only = lb.build(runs, tasks=["gsm8k", "smoke/keyword"], metrics=["accuracy", "benign refusal"])
    assert [c.name for c in only.columns] == ["smoke/keyword benign refusal", "gsm8k accuracy"]
    with pytest.raises(SafeevalError, match="--tasks: no run has hexphi; these do: advbench"):
        lb.build(runs, tasks=["hexphi"])
    with pytest.raises(SafeevalError, match="--metrics: no column measures F1; choose from ASR"):
        lb.build(runs, metrics=["F1"])


def test_deltas_against_a_baseline(runs, run_dirs):
    board = lb.build(runs, baseline="llama · lora · benign-ft · seed 0")
    assert board.baseline == "llama · lora · benign-ft · seed 0"
    base = [r for r in board.rows if r.is_baseline]
    assert len(base) == 1 and base[0].deltas["advbench/keyword ASR"] == 0
    qwen_full_2 = next(r for r in board.rows if r.label == "qwen · full · benign-ft · seed 2")
    assert qwen_full_2.deltas["advbench/keyword ASR"] == pytest.approx(
        asr_of("qwen", "full", 2) - asr_of("llama", "lora", 0)
    )
    assert qwen_full_2.deltas["gsm8k accuracy"] == pytest.approx(acc_of("qwen", "full", 2) - acc_of("llama", "lora", 0))
    # A baseline without gsm8k: no delta there, shown as "-".
    by_dir = lb.build(runs, baseline=str(run_dirs[-1]))
    assert by_dir.baseline == "llama · base · seed 0"
    row = by_dir.rows[0]
    assert row.deltas["gsm8k accuracy"] is None
    assert row.deltas["advbench/keyword ASR"] == pytest.approx(0.0)
    headers, cells = lb.table_cells(by_dir)
    k = headers.index(("gsm8k", "Δ accuracy pp"))
    assert cells[0][k] == "-"
    assert cells[3][headers.index(("advbench/keyword", "Δ ASR pp"))] == "+10.0"  # llama full seed 0: 0.2 - 0.1
    with pytest.raises(SafeevalError, match="matches 6 runs"):
        lb.build(runs, baseline="lora")
    with pytest.raises(SafeevalError, match="neither a run folder nor part of any run's label"):
        lb.build(runs, baseline="mistral")


def test_grouping_mean_and_sample_std_over_seeds(runs):
    board = lb.build(runs, group_by=["model", "method"])
    assert [r.label for r in board.rows] == [
        "llama · lora",
        "llama · full",
        "qwen · lora",
        "qwen · full",
        "llama · base",
    ]
    row = board.rows[3]
    values = [asr_of("qwen", "full", s) for s in SEEDS]
    cell = row.cells["advbench/keyword ASR"]
    assert cell.value == pytest.approx(statistics.mean(values))
    assert cell.std == pytest.approx(statistics.stdev(values))
    assert cell.seeds == 3 and len(row.runs) == 3
    assert lb.cell_text(cell, board.columns[0]) == "41.0 ± 1.0 (3)"
    assert board.rows[-1].cells["advbench/keyword ASR"].std is None  # one seed: no spread
    # grouped by method only: the two models' six runs per method
    by_method = lb.build(runs, group_by=["method"], baseline="base")
    lora = by_method.rows[0]
    assert lora.cells["gsm8k accuracy"].seeds == 6
    expect = statistics.mean(asr_of(m, "lora", s) for m in MODELS for s in SEEDS) - asr_of("llama", "none", 0)
    assert lora.deltas["advbench/keyword ASR"] == pytest.approx(expect)
    with pytest.raises(SafeevalError, match="--group-by seed: group by model, trained_on, method, scenario"):
        lb.build(runs, group_by=["seed"])
    with pytest.raises(SafeevalError, match="matches runs in 5 groups"):
        lb.build(runs, group_by=["model", "method"], baseline="seed 0")


def test_sorting_and_filtering(runs):
    board = lb.build(runs, sort="advbench/keyword asr", desc=True)
    values = [r.cells["advbench/keyword ASR"].value for r in board.rows]
    assert values == sorted(values, reverse=True)
    by_acc = lb.build(runs, sort="gsm8k accuracy")
    assert by_acc.rows[-1].label == "llama · base · seed 0"  # no value: last, either way
    assert lb.build(runs, sort="gsm8k accuracy", desc=True).rows[-1].label == "llama · base · seed 0"
    assert [r.keys["seed"] for r in lb.build(runs, sort="seed", desc=True).rows[:4]] == [2, 2, 2, 2]
    deltas = lb.build(runs, baseline="base", sort="advbench/keyword Δ ASR")
    assert [r.deltas["advbench/keyword ASR"] for r in deltas.rows[:2]] == [0, 0]  # a tie keeps the input order
    assert deltas.rows[1].is_baseline and deltas.rows[-1].label == "qwen · full · benign-ft · seed 2"
    with pytest.raises(
        SafeevalError,
        match=r"--sort 'F1' is not a column; sort by one of: run, model, trained_on, method, scenario, seed, "
        r"advbench/keyword ASR",
    ):
        lb.build(runs, sort="F1")

    picked = lb.build(runs, filters=lb.parse_filters(["method=lora", "seed=1", "seed=2"]))
    assert {(r.keys["method"], r.keys["seed"]) for r in picked.rows} == {("lora", 1), ("lora", 2)}
    assert len(picked.rows) == 4
    for bad, msg in [("method", "is not KEY=VALUE"), ("judge=keyword", "unknown key 'judge'")]:
        with pytest.raises(SafeevalError, match=msg):
            lb.parse_filters([bad])
    with pytest.raises(SafeevalError, match="No run matches --filter model=mistral"):
        lb.build(runs, filters=lb.parse_filters(["model=mistral"]))
    with pytest.raises(SafeevalError, match="No runs given"):
        lb.build([])


def test_formats(runs):
    board = lb.build(runs, baseline="base")
    md = lb.render_markdown(board).splitlines()
    assert md[0].startswith("| run | advbench/keyword ASR % | advbench/keyword Δ ASR pp |")
    assert md[1].startswith("|---|---:|") and md[2 + 13] == "" and md[2 + 13 + 2] == ""
    assert md[2 + 13 + 3 :] == [
        "- judge keyword: unvalidated",  # results from before judge cards
        "- contamination not checked in 13 rows (results written before the check, or its "
        "data was not at hand): llama · lora · benign-ft · seed 0, llama · lora · benign-ft · "
        "seed 1, llama · lora · benign-ft · seed 2, ...",
    ]
    assert (
        "| llama · lora · benign-ft · seed 0 | 10.0 [5.0, 15.0] | -0.0 |" in md[2]
        or "| llama · lora · benign-ft · seed 0 | 10.0 [5.0, 15.0] | +0.0 |" in md[2]
    )

    rows = list(csv.DictReader(io.StringIO(lb.render_csv(board))))
    assert len(rows) == 13
    assert float(rows[1]["advbench/keyword ASR"]) == pytest.approx(0.11)
    assert float(rows[1]["advbench/keyword ASR_ci_low"]) == pytest.approx(0.06)
    assert float(rows[1]["advbench/keyword ASR_ci_high"]) == pytest.approx(0.16)
    assert float(rows[1]["advbench/keyword Δ ASR"]) == pytest.approx(0.01)
    assert rows[-1]["gsm8k accuracy"] == "" and rows[-1]["method"] == "base"

    data = json.loads(lb.render_json(board))
    cell = data["rows"][0]["cells"]["gsm8k accuracy"]
    assert cell == {"value": 0.5, "ci_low": 0.47, "ci_high": 0.53, "n": 1000}
    assert data["rows"][-1]["cells"]["gsm8k accuracy"] is None
    assert data["rows"][-1]["is_baseline"] and data["baseline"] == "llama · base · seed 0"
    assert data["columns"][0] == {
        "name": "advbench/keyword ASR",
        "task": "advbench",
        "evaluator": "keyword",
        "metric": "ASR",
        "key": "asr",
        "kind": "safety",
        "delta": "advbench/keyword Δ ASR",
    }

    grouped = json.loads(lb.render_json(lb.build(runs, group_by=["model"])))
    assert grouped["grouped_by"] == ["model"]
    g = grouped["rows"][0]["cells"]["advbench/keyword ASR"]
    assert g["n_seeds"] == 7 and len(g["values"]) == 7 and g["std"] > 0
    grouped_csv = list(csv.DictReader(io.StringIO(lb.render_csv(lb.build(runs, group_by=["model"])))))
    assert grouped_csv[0]["advbench/keyword ASR_n_seeds"] == "7" and grouped_csv[0]["seeds"] == "7"


def test_terminal_tables_fit_80_columns(runs):
    board = lb.build(runs, baseline="base", metrics=["all"])
    text = lb.render_text(board, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "leaderboard (1/" in text and "10.0 [5.0, 15.0]" in text and "Δ ASR pp" in text
    assert text.count("llama · lora") >= 2  # the run column repeats in each part
    assert "…" not in text  # nothing cut


def test_cli(run_dirs, tmp_path):
    runner = CliRunner()
    args = ["leaderboard", *map(str, run_dirs)]
    got = runner.invoke(app, args)
    assert got.exit_code == 0, got.output
    assert "10.0 [5.0, 15.0]" in got.output and "llama · base" in got.output

    got = runner.invoke(
        app,
        [
            *args,
            "--group-by",
            "model,method",
            "--baseline",
            "base",
            "--format",
            "markdown",
            "--sort",
            "advbench/keyword Δ ASR",
            "--desc",
        ],
    )
    assert got.exit_code == 0, got.output
    lines = got.output.splitlines()
    assert lines[0].startswith("| group | seeds | advbench/keyword ASR % | advbench/keyword Δ ASR pp |")
    assert lines[2].startswith("| qwen · full | 3 | 41.0 ± 1.0 (3) | +31.0 |")

    out = tmp_path / "board.json"
    got = runner.invoke(app, [*args, "--filter", "model=qwen", "--tasks", "gsm8k", "--output", str(out)])
    assert got.exit_code == 0, got.output
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 6 and [c["name"] for c in data["columns"]] == ["gsm8k accuracy"]

    got = runner.invoke(app, [*args, "--format", "csv", "--metrics", "accuracy"])
    assert (
        got.exit_code == 0
        and got.output.splitlines()[0]
        == "label,model,trained_on,method,scenario,seed,gsm8k accuracy,gsm8k accuracy_ci_low,gsm8k accuracy_ci_high,"
        "contamination"
    )

    for extra, msg in [
        (["--sort", "nope"], "not a column; sort by one of: run"),
        (["--filter", "colour=red"], "unknown key 'colour'"),
        (["--format", "xml"], "choose one of table, markdown, csv, json"),
    ]:
        got = runner.invoke(app, [*args, *extra])
        assert got.exit_code == 2 and msg in " ".join(got.output.split()), got.output
    got = runner.invoke(app, ["leaderboard"])
    assert got.exit_code == 2 and "No runs given" in got.output

    help_text = runner.invoke(app, ["leaderboard", "--help"]).output
    assert "--baseline" in help_text and "Examples" in help_text


def test_cli_reads_the_store(run_dirs, tmp_path):
    from safeeval.store import Store

    db = Store(tmp_path / "s.sqlite")
    for d in run_dirs[:3]:
        db.put_run(str(d.resolve()), results.read(d).to_dict())
    db.close()
    got = CliRunner().invoke(
        app, ["leaderboard", "--store", str(tmp_path / "s.sqlite"), str(run_dirs[0]), "--format", "json"]
    )
    assert got.exit_code == 0, got.output
    assert len(json.loads(got.output)["rows"]) == 3  # the folder also in the store is one row


def test_runs_trained_on_different_tasks_are_rows_and_groups_of_their_own(tmp_path):
    folders = []
    for task in ("sst2", "gsm8k", str(tmp_path / "mine.jsonl")):
        for seed in (0, 1):
            r = results_dict("llama", "lora", seed)
            r["training"] = {**r["training"], "task": task, "stage": "finetune"}
            folders.append(tmp_path / f"{Path(task).stem}-{seed}" / "score")  # as train-and-score writes them
            write_run(folders[-1], r, [])
    align = results_dict("qwen", "full", 0)
    align["training"] = {
        **align["training"],
        "task": "dolly",
        "stage": "align",
        "scenario": "-",
        "method": "align (er)",
    }
    write_run(tmp_path / "aligned" / "score", align, [])
    runs = load_runs([*folders, tmp_path / "aligned" / "score"])
    assert {r.label for r in runs} == {
        f"llama · {t} · lora · benign-ft · seed {s}" for t in ("sst2", "gsm8k", "mine") for s in (0, 1)
    } | {"qwen · align (er) · seed 0"}
    grouped = lb.build(runs, group_by=["trained_on", "method"])
    assert sorted(row.label for row in grouped.rows) == ["- · align (er)", "gsm8k · lora", "mine · lora", "sst2 · lora"]
    assert lb.build(runs, filters=lb.parse_filters(["trained_on=gsm8k"])).rows[0].label.startswith("llama · gsm8k")
    # alike in every key, two train-and-score runs are told apart by their run folder, not by "score"
    write_run(tmp_path / "again" / "score", json.loads((folders[0] / "results.json").read_text()), [])
    assert sorted(r.tag for r in load_runs([folders[0], tmp_path / "again" / "score"])) == ["again", "sst2-0"]


def test_a_fine_tuned_run_goes_by_the_model_it_was_trained_from(tmp_path):
    # A merge writes its own model folder per seed, an adapter run keeps its base's name: both are named by the base,
    # so a merge's seeds group into one row; the provider's alignment is the model itself, named as scored.
    folders = []
    for method, seed in (("linear", 0), ("linear", 1), ("sft", 0)):
        r = results_dict("llama", "lora", seed)
        r["model"]["name"] = "aligned" if method == "sft" else f"runs/{method}-s{seed}/model"
        r["training"] = {**r["training"], "method": method, "task": "sst2", "base_model": {"name": "aligned"}}
        folders.append(tmp_path / f"{method}-{seed}")
        write_run(folders[-1], r, [])
    align = results_dict("llama", "lora", 0)
    align["model"]["name"] = "aligned"
    align["training"] = {**align["training"], "method": "align (er)", "stage": "align", "base_model": {"name": "smol"}}
    write_run(tmp_path / "align", align, [])
    runs = load_runs([*folders, tmp_path / "align"])
    assert [r.label for r in runs] == [
        "aligned · sst2 · linear · benign-ft · seed 0",
        "aligned · sst2 · linear · benign-ft · seed 1",
        "aligned · sst2 · sft · benign-ft · seed 0",
        "aligned · align (er) · benign-ft · seed 0",
    ]
    grouped = lb.build(runs[:3], group_by=["model", "method"])
    assert [(row.label, len(row.runs)) for row in grouped.rows] == [("aligned · linear", 2), ("aligned · sft", 1)]


def test_judge_cards_and_shells_stand_beside_the_scores(tmp_path):
    """A judge validated only on refusal labels says, beside an ASR, that this validates refusal detection, not
    harm; a judge without a card (results written before cards) is `unvalidated`, never blank; shells and the ASR
    without them are default columns."""
    from safeeval.cards import judge_card

    refusal_only = judge_card(
        [
            {
                "label_set": "xstest-completions",
                "scheme": "refusal",
                "agreement": 0.9,
                "cohen_kappa": 0.8,
                "n": 1350,
                "labels_hash": "abc",
            }
        ]
    )
    folders = []
    for name, card in (("carded", refusal_only), ("old", None)):
        r = results_dict("llama", name, 0, gsm8k=False)
        block = r["metrics"]["advbench"]["keyword"]
        block.update(asr_without_shells=_rate(0.05), shell_share=_rate(0.06), degenerate_share=_rate(0.01))
        if card is not None:
            r["judges"] = {"keyword": {"kind": "keyword", "card": card}}
        folders.append(write_run(tmp_path / name, r, []))
    board = lb.build(load_runs(folders), tasks=["advbench"])
    assert [c.metric for c in board.columns] == ["ASR", "ASR without shells", "degenerate", "shells"]
    line = next(x for x in lb.legend(board) if x.startswith("judge keyword"))
    assert line == (
        "judge keyword: validated: xstest-completions (refusal class): agreement 0.900, kappa 0.800, "
        "n 1350 (validates refusal detection, not harm) (1 rows); or unvalidated (1 rows)"
    )
    assert line in lb.render_text(board, 400).splitlines()  # under the terminal table
    rows = list(csv.DictReader(io.StringIO(lb.render_csv(board))))
    assert rows[0]["judge card: keyword"].endswith("(validates refusal detection, not harm)")
    assert rows[1]["judge card: keyword"] == "unvalidated"
    data = lb.to_dict(board)
    assert data["rows"][0]["judge_cards"]["keyword"] == [refusal_only]
    assert data["rows"][1]["judge_cards"]["keyword"] == [{"status": "unvalidated", "validations": []}]
    assert "- judge keyword: validated: xstest-completions" in lb.render_markdown(board)
