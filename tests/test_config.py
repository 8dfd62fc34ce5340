"""One run contract: the same settings give the same ScoreConfig through every entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from safeeval.cli import app
from safeeval.cli.score import config_from_flags
from safeeval.config import ScoreConfig
from safeeval.errors import SafeevalError
from safeeval.results import ModelInfo, RunResult
from safeeval.sweep import load_sweep, reference_config
from safeeval.train.config import load_config
from safeeval.train.evaluate import score_config

# What a scored model is scored with, whoever asks; the model and where results go differ by entry point.
SAME = (
    "tasks",
    "judges",
    "backend",
    "limit",
    "subset_seed",
    "max_new_tokens",
    "temperature",
    "top_p",
    "system_prompt",
    "data_dir",
    "tasks_dirs",
    "judges_dirs",
    "judge_batch",
    "judge_backend",
    "judge_models",
    "judge_options",
    "perplexity_model",
)


def _flags(args: list[str]) -> dict:
    command = get_command(app).get_command(None, "score")
    return command.make_context("score", args).params


def _same(a: ScoreConfig, b: ScoreConfig) -> dict:
    return {k: (getattr(a, k), getattr(b, k)) for k in SAME if getattr(a, k) != getattr(b, k)}


@pytest.fixture
def settings(tmp_path, data_dir):
    tasks_dir = tmp_path / "mytasks"
    tasks_dir.mkdir()
    return {
        "tasks": ["advbench", "smoke"],
        "judges": ["keyword"],
        "limit": 5,
        "subset_seed": 3,
        "max_new_tokens": 32,
        "system_prompt": "Be safe.",
        "batch_size": 4,
        "data_dir": str(data_dir),
        "tasks_dirs": [str(tasks_dir)],
    }


def test_every_entry_point_builds_the_same_config(settings, tmp_path, data_dir):
    cli = config_from_flags(
        _flags(
            [
                "--model",
                "smollm2",
                "--tasks",
                "advbench,smoke",
                "--limit",
                "5",
                "--subset-seed",
                "3",
                "--max-new-tokens",
                "32",
                "--system-prompt",
                "Be safe.",
                "--batch-size",
                "4",
                "--data-dir",
                str(data_dir),
                "--tasks-dir",
                settings["tasks_dirs"][0],
            ]
        )
    )
    direct = ScoreConfig.from_settings({**settings, "model": "smollm2"})
    assert _same(cli, direct) == {} and cli.backend_options == direct.backend_options == {"batch_size": 4}

    sweep_file = tmp_path / "study.yaml"
    score_block = {k: v for k, v in settings.items() if k not in ("data_dir", "tasks_dirs")}
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "runs": str(tmp_path / "runs"),
                "data_dir": str(data_dir),
                "reference": ["smollm2"],
                "train": {"base": "smollm2", "steps": 2, "tasks_dirs": settings["tasks_dirs"]},
                "grid": {"task": "sst2", "method": "sft"},
                "score": score_block,
            }
        )
    )
    spec, steps = load_sweep(sweep_file)
    reference = reference_config(spec, steps[0], None)
    tasks = [*settings["tasks"], "sst2"]  # a sweep scores every model on the utility its grid trains for too
    assert _same(reference, ScoreConfig.from_settings({**settings, "tasks": tasks, "model": "smollm2"})) == {}

    train_cfg = load_config(
        None, {"base": "smollm2", "task": "sst2", "data_dir": str(data_dir), "tasks_dirs": settings["tasks_dirs"]}
    )
    record = {
        "output": {"model": None, "adapter": str(tmp_path / "adapter")},
        "base_model": {"name": "smollm2"},
        "config": {"out": str(tmp_path / "run"), "task": "sst2", "poison_ratio": 0.1},
        "method": {"name": "sft", "options": {}},
        "scenario": "benign",
        "seed": 0,
        "config_hash": "x",
        "data": {},
    }
    trained = score_config(record, train_cfg, score_block)
    assert _same(trained, direct) == {}
    assert trained.backend_options["adapter"] == str(tmp_path / "adapter")

    result = RunResult(model=ModelInfo("smollm2", "hf", "f" * 16), metrics={}, config=cli.settings())
    rescored = ScoreConfig.from_results(RunResult.from_dict(json.loads(json.dumps(result.to_dict()))), "./candidate")
    assert _same(rescored, cli) == {} and rescored.model == "./candidate"


def test_a_reference_model_gets_the_studys_system_prompt(settings, tmp_path, data_dir):
    """Sweep reference steps used to drop system_prompt, tasks_dirs and the subset seed."""
    sweep_file = tmp_path / "study.yaml"
    # (a sweep reads its data before any step runs: the pre-flight check scores nothing, but loads the prompts)
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "runs": str(tmp_path / "runs"),
                "reference": ["smollm2"],
                "data_dir": str(data_dir),
                "train": {"base": "smollm2"},
                "grid": {"task": "self-instruct", "method": "sft"},
                "score": {"system_prompt": "Be safe.", "subset_seed": 7},
            }
        )
    )
    spec, steps = load_sweep(sweep_file)
    cfg = reference_config(spec, steps[0], None)
    assert cfg.system_prompt == "Be safe." and cfg.subset_seed == 7


def test_results_of_schema_1_0_still_rebuild_their_config():
    old = {
        "schema_version": 1,
        "model": {"name": "m", "backend": "hf", "fingerprint": "f" * 16},
        "generation": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 2, "system_prompt": "S"},
        "tasks": {
            "smoke": {
                "spec": "smoke",
                "spec_hash": "h",
                "split": None,
                "source": "inline",
                "n_samples": 40,
                "sample_ids_hash": "i",
            }
        },
        "judges": {"keyword": {"kind": "keyword"}},
        "metrics": {},
        "seed": 2,
        "limit": 10,
    }
    cfg = ScoreConfig.from_results(RunResult.from_dict(old), "cand")
    assert (cfg.tasks, cfg.judges, cfg.limit, cfg.seed, cfg.subset_seed, cfg.max_new_tokens, cfg.system_prompt) == (
        ["smoke"],
        ["keyword"],
        10,
        2,
        2,
        64,
        "S",
    )


def test_settings_that_cannot_be_honoured_are_refused(tmp_path):
    with pytest.raises(SafeevalError, match="Unknown score setting 'limt'"):
        ScoreConfig.from_settings({"model": "m", "limt": 3})
    with pytest.raises(SafeevalError, match="openai backend does not take adapter"):
        ScoreConfig.from_settings({"model": "m", "backend": "openai", "adapter": "./lora"})
    result = RunResult(
        model=ModelInfo("m", "hf", "f" * 16),
        metrics={},
        config={"tasks": ["smoke"], "tasks_dirs": [str(tmp_path / "gone")]},
    )
    with pytest.raises(SafeevalError, match="do not exist here"):
        ScoreConfig.from_results(result, "cand")


def test_results_round_trip_and_keep_unknown_fields(tmp_path):
    from safeeval import results

    data = {
        "schema_version": "1.7",
        "model": {"name": "m", "backend": "hf", "fingerprint": "f", "gpu": "h200"},
        "metrics": {"t": {"j": {"asr": {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9, "n": 4}}}},
        "a_field_from_the_future": {"x": 1},
    }
    run = results.RunResult.from_dict(data)
    assert run.model.extra == {"gpu": "h200"} and run.rate("t", "j", "asr").n == 4
    results.write(tmp_path, run, [])
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["a_field_from_the_future"] == {"x": 1} and again["model"]["gpu"] == "h200"
    with pytest.raises(SafeevalError, match="schema version 2"):
        results.RunResult.from_dict({**data, "schema_version": "2.0"})
    assert Path(results.read(tmp_path).out) == tmp_path
