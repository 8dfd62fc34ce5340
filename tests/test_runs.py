"""Finished runs read back from their folders or from the store."""

from __future__ import annotations

import json

import pytest

from safeeval.errors import SafeevalError
from safeeval.report.runs import load_run, load_runs
from safeeval.run import ScoreConfig, score


def test_runs_from_folders_and_from_the_store(tiny_model, tmp_path):
    for seed in (0, 1):
        score(
            ScoreConfig(
                model=str(tiny_model),
                tasks=["smoke"],
                max_new_tokens=2,
                seed=seed,
                limit=6,
                store=tmp_path / "s.sqlite",
                out=tmp_path / f"run{seed}",
            )
        )
    from_folders = load_runs([tmp_path / "run0", tmp_path / "run1" / "results.json"])
    from_store = load_runs(store=tmp_path / "s.sqlite")
    assert [r.seed for r in from_folders] == [r.seed for r in from_store] == [0, 1]
    assert from_store[0].metrics()[("smoke", "keyword")]["n"] == 6
    assert len(from_store[1].samples()) == 6 and from_folders[0].label.endswith("seed 0")


def test_bad_run_paths_are_clear(tmp_path):
    with pytest.raises(SafeevalError, match="No results.json"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(SafeevalError, match="schema version 99"):
        load_run(tmp_path)
    with pytest.raises(SafeevalError, match="No runs given"):
        load_runs([])


def test_runs_alike_in_every_key_are_told_apart(tiny_model, tmp_path):
    for name in ("a", "b"):
        score(
            ScoreConfig(
                model=str(tiny_model),
                tasks=["smoke"],
                max_new_tokens=2,
                limit=4,
                store=tmp_path / "s.sqlite",
                out=tmp_path / name,
            )
        )
    runs = load_runs([tmp_path / "a", tmp_path / "b", tmp_path / "a"], store=tmp_path / "s.sqlite")
    assert sorted(r.label.rsplit(" · ", 1)[-1] for r in runs) == ["a", "b"]  # and each folder once
