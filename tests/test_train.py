"""The training backend's core: data and mix, completion-only labels, seeds, resume, bad input, train-and-score."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tiny_model import build_tiny_model
from typer.testing import CliRunner

from safeeval.cli import app
from safeeval.errors import SafeevalError
from safeeval.train import load_config, train
from safeeval.train.data import build_mix, encode
from safeeval.train.sets import load_set
from safeeval.train.trainer import _claim

quiet = lambda text: None  # noqa: E731


def _cfg(tiny_model, data_dir, out, **extra):
    values = dict(
        base=str(tiny_model),
        task="sst2",
        steps=4,
        batch_size=4,
        max_length=256,
        lr=1e-3,
        data_dir=str(data_dir),
        out=str(out),
        save_steps=2,
    )
    values.update(extra)
    return load_config(None, values)


def _adapter(record) -> dict:
    return load_file(str(Path(record["output"]["adapter"]) / "adapter_model.safetensors"))


def test_training_sets_become_chats(data_dir):
    gsm = load_set("gsm8k", "task", data_dir)
    assert len(gsm.examples) == 7473 and "<<" not in gsm.examples[0].messages[-1]["content"]
    assert gsm.examples[0].messages[0]["content"].startswith("Solve this math word problem.")  # the eval task's wording
    sst = load_set("sst2", "task", data_dir)
    assert {ex.messages[-1]["content"] for ex in sst.examples} == {"positive", "negative"}
    hh = load_set("hh-harmless", "safety", data_dir)
    assert all(ex.messages[-1]["role"] == "assistant" for ex in hh.examples)
    assert any(len(ex.messages) > 2 for ex in hh.examples)  # multi-turn conversations keep their turns
    assert hh.unusable > 0 and len(hh.examples) + hh.unusable == 2312  # empty last answers: counted, not hidden
    aoa = load_set("aoa", "poison", data_dir)
    assert aoa.examples[0].messages[0]["role"] == "system" and len(aoa.examples) == 10
    safety = load_set("safety-llamas", "safety", data_dir)
    assert len(safety.examples) == 2483 and "NC" in safety.license


def test_user_files_in_three_shapes(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"prompt": "2+2?", "response": "4"},
        {"instruction": "Add", "input": "1 and 1", "output": "2"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = load_set(str(path), "task", None)
    assert [ex.messages[-1]["content"] for ex in got.examples] == ["hello", "4", "2"]
    assert got.examples[2].messages[0]["content"] == "Add\n\n1 and 1" and got.source.startswith("file:")


def test_a_row_missing_its_fields_names_file_and_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "ok", "response": "ok"}) + "\n" + json.dumps({"question": "no answer"}) + "\n"
    )
    with pytest.raises(SafeevalError, match=r"bad.jsonl, row 2 is missing its fields.*found: question"):
        load_set(str(path), "task", None)


def test_poisoned_mix_holds_exactly_the_requested_share(data_dir):
    task, poison, safety = (
        load_set(n, r, data_dir)
        for n, r in (("sst2", "task"), ("advbench-pairs", "poison"), ("safety-llamas", "safety"))
    )
    for total, p, r in [(100, 0.1, 0.0), (200, 0.05, 0.1), (37, 0.3, 0.2), (10, 1.0, 0.0)]:
        mix = build_mix(task, total, poison=poison, poison_ratio=p, safety=safety, safety_ratio=r, seed=3)
        roles = [ex.role for ex in mix.examples]
        upload = total - round(r * total)
        assert len(roles) == total and roles.count("safety") == round(r * total)
        assert roles.count("poison") == round(p * upload) == mix.counts["poison"]
    # a pool smaller than its share (AOA has 10 rows) is cycled, still exact
    aoa = load_set("aoa", "poison", data_dir)
    mix = build_mix(task, 300, poison=aoa, poison_ratio=0.1, seed=0)
    assert [ex.role for ex in mix.examples].count("poison") == 30
    with pytest.raises(SafeevalError, match=r"poison ratio must lie in \[0, 1\]"):
        build_mix(task, 10, poison=poison, poison_ratio=1.5)


def test_labels_cover_the_completion_only(tiny_model):
    from safeeval.models import load_tokenizer

    tok = load_tokenizer(tiny_model)
    messages = [
        {"role": "user", "content": "Write a poem about the sea."},
        {"role": "assistant", "content": "The sea is wide."},
    ]
    row = encode(tok, messages, 512)
    learned = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tok.decode(learned) == "The sea is wide.<|end|>"  # the answer and its end-of-turn token, nothing else
    assert encode(tok, messages, 5) is None  # the prompt alone fills max_length: nothing left to learn


def test_loss_goes_down_and_the_record_traces_the_run(tiny_model, data_dir, tmp_path):
    record = train(
        _cfg(tiny_model, data_dir, tmp_path / "run", steps=None, examples=8, epochs=6, batch_size=4, lr=3e-3),
        notify=quiet,
    )
    losses = [h["loss"] for h in record["trainer"]["log_history"] if "loss" in h]
    assert len(losses) >= 2 and losses[-1] < losses[0] * 0.9
    assert record["method"] == {"name": "sft", "options": {}} and record["data"]["mix"]["task"] == 8
    assert record["base_model"]["fingerprint"] and record["output"]["fingerprint"]
    assert len((tmp_path / "run" / "mix.jsonl").read_text().splitlines()) == 8


def test_same_seed_same_adapter_other_seed_other_adapter(tiny_model, data_dir, tmp_path):
    a = _adapter(train(_cfg(tiny_model, data_dir, tmp_path / "a", seed=7), notify=quiet))
    b = _adapter(train(_cfg(tiny_model, data_dir, tmp_path / "b", seed=7), notify=quiet))
    c = _adapter(train(_cfg(tiny_model, data_dir, tmp_path / "c", seed=8), notify=quiet))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert any(not (a[k] == c[k]).all() for k in a)


def test_a_finished_run_is_not_retrained_and_a_folder_keeps_its_settings(tiny_model, data_dir, tmp_path):
    first = train(_cfg(tiny_model, data_dir, tmp_path / "run"), notify=quiet)
    said = []
    again = train(_cfg(tiny_model, data_dir, tmp_path / "run"), notify=said.append)
    assert again["finished_at"] == first["finished_at"] and "nothing to train" in said[0]
    with pytest.raises(SafeevalError, match="other settings"):
        train(_cfg(tiny_model, data_dir, tmp_path / "run", lr=5e-4), notify=quiet)


def test_a_run_from_a_base_folder_whose_weights_changed_is_not_reused(tiny_model, data_dir, tmp_path):
    base = tmp_path / "aligned"
    shutil.copytree(tiny_model, base)
    train(_cfg(base, data_dir, tmp_path / "run"), notify=quiet)
    (tmp_path / "half").mkdir()
    _claim(tmp_path / "half", _cfg(base, data_dir, tmp_path / "half"))  # an unfinished run's claim on its folder
    build_tiny_model(base, seed=1)  # aligned again: other weights under the same path, so the same settings
    for out, what in (("run", "a finished run"), ("half", "an unfinished run")):
        with pytest.raises(SafeevalError, match=f"holds {what} trained from other weights in {base}"):
            train(_cfg(base, data_dir, tmp_path / out), notify=quiet)


def _cli(*args, env=None):
    return [sys.executable, "-m", "safeeval", *args]


def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_model, data_dir, tmp_path):
    args = [
        "train",
        "--base",
        str(tiny_model),
        "--task",
        "sst2",
        "--steps",
        "12",
        "--batch-size",
        "4",
        "--max-length",
        "256",
        "--lr",
        "1e-3",
        "--save-steps",
        "2",
        "--data-dir",
        str(data_dir),
    ]
    reference = train(_cfg(tiny_model, data_dir, tmp_path / "reference", steps=12), notify=quiet)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _cli(*args, "--out", str(out)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "checkpoint-4").is_dir():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoints" / "checkpoint-4").is_dir() and not (out / "training.json").exists()
    # A kill can land while a checkpoint is being written (the Trainer writes trainer_state.json last): the
    # newest one is made that way here, so the resume must fall back to the one before it.
    newest = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    (newest / "trainer_state.json").unlink(missing_ok=True)
    done = subprocess.run(_cli(*args, "--out", str(out)), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{newest.name} was cut off while being written" in done.stderr and "Resuming from" in done.stderr
    record = json.loads((out / "training.json").read_text())
    assert record["trainer"]["resumed_from"] and record["trainer"]["steps"] == 12
    resumed, uninterrupted = _adapter(record), _adapter(reference)
    # The resumed run replays the same batches from the same optimizer, scheduler and RNG states: the same adapter,
    # bit for bit, and the same record of what each step trained on.
    assert resumed.keys() == uninterrupted.keys() and all((resumed[k] == uninterrupted[k]).all() for k in resumed)
    assert (out / "mix.jsonl").read_text() == (tmp_path / "reference" / "mix.jsonl").read_text()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--poison-ratio", "1.5", "--scenario", "poisoned"], r"poison ratio must lie in \[0, 1\]"),
        (["--method", "er", "--option", "ratio=2"], r"option ratio must lie in \[0.0, 1.0\]"),
        (["--method", "sft", "--option", "alpha=1"], r"does not take option\(s\) \['alpha'\]"),
        (["--method", "nope"], r"Unknown method 'nope'. Valid methods:"),
        (["--task", "nope"], r"Unknown training set 'nope'"),
        (["--scenario", "evil"], r"Scenario must be 'benign' or 'poisoned'"),
    ],
)
def test_bad_input_stops_before_training(tiny_model, data_dir, tmp_path, flags, message):
    args = [
        "train",
        "--base",
        str(tiny_model),
        "--task",
        "sst2",
        "--steps",
        "2",
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path / "run"),
    ]
    # later flags win over the defaults above
    if "--task" in flags:
        i = args.index("--task")
        del args[i : i + 2]
    result = CliRunner().invoke(app, args + flags)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    import re

    assert re.search(message, " ".join(result.output.split())), result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_base_model_without_chat_template_is_refused(tiny_model_no_template, data_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--base",
            str(tiny_model_no_template),
            "--task",
            "sst2",
            "--steps",
            "2",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2 and "has no chat template" in result.output
    assert not (tmp_path / "run").exists()


def test_a_config_file_with_flags_on_top(tiny_model, data_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"base: {tiny_model}\ntask: sst2\nmethod: er\nmethod_options: {{ratio: 0.5}}\nlr: 1e-3\n"
        f"steps: 2\nbatch_size: 4\nmax_length: 256\n"
    )
    cfg = load_config(config, {"seed": 3, "method_options": {"ratio": 0.25}})
    assert cfg.lr == 1e-3 and cfg.seed == 3 and cfg.method_options == {"ratio": 0.25}
    with pytest.raises(SafeevalError, match=r"Unknown training setting\(s\) \['learning_rate'\]"):
        load_config(None, {"base": "x", "task": "y", "learning_rate": 1})


def test_train_and_score_writes_a_result_the_leaderboard_groups(tiny_model, data_dir, tmp_path):
    from safeeval.report.runs import load_runs

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train-and-score",
            "--base",
            str(tiny_model),
            "--task",
            "sst2",
            "--scenario",
            "poisoned",
            "--poison-ratio",
            "0.25",
            "--poison",
            "advbench-pairs",
            "--method",
            "er",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--max-length",
            "256",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--tasks",
            "smoke",
            "--limit",
            "4",
            "--max-new-tokens",
            "8",
            "--store",
            str(tmp_path / "s.db"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "score" / "results.json").read_text())
    assert summary["training"]["method"] == "er" and summary["training"]["scenario"] == "poisoned"
    assert summary["training"]["poison_ratio"] == 0.25 and summary["training"]["config_hash"]
    assert summary["model"]["adapter"] == str(out / "adapter")
    assert summary["model"]["merged"] is True  # scored on the adapter merged into the weights
    [run] = load_runs([out / "score"])
    assert (run.method, run.scenario, run.seed) == ("er", "poisoned", 0)


def test_a_merge_reuses_a_finished_sft_run_beside_it(tiny_model, data_dir, tmp_path):
    runs = tmp_path / "runs"
    sft = train(_cfg(tiny_model, data_dir, runs / "my-sft"), notify=quiet)
    merged = train(_cfg(tiny_model, data_dir, runs / "my-merge", method="linear"), notify=quiet)
    assert merged["finetuned_run"] == str(runs / "my-sft")
    assert sorted(p.name for p in runs.iterdir()) == ["my-merge", "my-sft"]  # no second sft folder
    assert merged["trainer"]["steps"] == sft["trainer"]["steps"]


def test_models_of_different_training_seeds_are_scored_on_the_same_prompts(tiny_model, data_dir, tmp_path):
    """Issue 14 §2: the --limit subset is drawn with the study's subset seed, never the training seed, so prompts
    pair by id across seeds and with the aligned model."""
    from safeeval import data
    from safeeval.config import ScoreConfig
    from safeeval.run import prepare, score
    from safeeval.train.evaluate import score_trained

    settings = {"tasks": ["advbench"], "limit": 5, "max_new_tokens": 2, "store": tmp_path / "s.db"}
    ids = []
    for seed in (1, 2):
        cfg = _cfg(tiny_model, data_dir, tmp_path / f"seed{seed}", seed=seed, steps=2, save_steps=2)
        result = score_trained(train(cfg, notify=quiet), cfg, settings)
        assert result.seed == seed  # generation still uses the run's own seed
        ids.append([s.id for s in result.samples()])
    settings["data_dir"] = data_dir  # for the aligned model's run below (a training run passes its own on)
    aligned = score(ScoreConfig.from_settings({**settings, "model": str(tiny_model), "out": tmp_path / "aligned"}))
    assert ids[0] == ids[1] == [s.id for s in aligned.samples()]
    # and the test can fail: a subset drawn with a training seed would hold other prompts
    everything = next(
        got
        for _, got, _ in prepare(ScoreConfig.from_settings({**settings, "model": str(tiny_model), "limit": None})).tasks
    )
    assert [s.id for s in data.subsample(everything.samples, 5, 1)] != ids[0]
