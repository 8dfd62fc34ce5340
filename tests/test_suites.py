"""Suites average their benchmarks' metric, and never silently over fewer benchmarks."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from safeeval.cli import app
from safeeval.errors import SafeevalError
from safeeval.run import ScoreConfig, prepare, score


def test_new_benchmarks_load(data_dir):
    prep = prepare(
        ScoreConfig(
            model="x", tasks=["directharm4", "strongreject", "benign-selfinstruct", "benign-dolly"], data_dir=data_dir
        )
    )
    sizes = {label: len(got.samples) for label, got, _ in prep.tasks}
    assert sizes == {"directharm4": 400, "strongreject": 313, "benign-selfinstruct": 175, "benign-dolly": 387}
    by = {label: got.samples for label, got, _ in prep.tasks}
    assert {s.category for s in by["directharm4"]} == {"malware", "drug", "phishing", "disinfo"}
    assert all(s.harmful for s in by["strongreject"]) and not any(s.harmful for s in by["benign-dolly"])
    assert {s.meta["source"] for s in by["strongreject"]} >= {"custom", "AdvBench", "DAN"}


def test_suite_with_an_unavailable_member_says_so(tiny_model, data_dir, tmp_path):
    res = score(
        ScoreConfig(
            model=str(tiny_model),
            tasks=["suite:unforgotten-safety"],
            limit=6,
            max_new_tokens=2,
            data_dir=data_dir,
            store=tmp_path / "s.sqlite",
            out=tmp_path / "run",
        )
    )
    suite = res.suites["unforgotten-safety"]
    assert set(res.metrics) == {"advbench", "directharm4"}
    assert "hexphi" in suite["unavailable"] and "HF_TOKEN" in suite["unavailable"]["hexphi"]
    avg = suite["averages"]["keyword"]
    assert avg["complete"] is False and avg["missing"] == ["hexphi"]
    values = [res.metrics[t]["keyword"]["asr"]["value"] for t in ("advbench", "directharm4")]
    assert avg["value"] == pytest.approx(sum(values) / 2)


def test_a_task_named_outright_still_fails_without_data(data_dir):
    with pytest.raises(SafeevalError, match="HEx-PHI is gated"):
        prepare(ScoreConfig(model="x", tasks=["suite:unforgotten-safety", "hexphi"], data_dir=data_dir))
    with pytest.raises(SafeevalError, match="Unknown suite 'nope'. Valid suites: benign-refusal, unforgotten-safety"):
        prepare(ScoreConfig(model="x", tasks=["suite:nope"], data_dir=data_dir))


def test_cli_flags_an_incomplete_suite(tiny_model, data_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--model",
            str(tiny_model),
            "--tasks",
            "suite:unforgotten-safety",
            "--limit",
            "4",
            "--max-new-tokens",
            "2",
            "--data-dir",
            str(data_dir),
            "--store",
            str(tmp_path / "s.sqlite"),
            "--out",
            str(tmp_path / "run"),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "over 2 of 3 benchmarks — INCOMPLETE: averaged without hexphi" in result.output
