"""A run stopped at a checkpoint and resumed ends exactly as the uninterrupted run: the same adapter bit for bit,
and the same mix.jsonl, for every method.

The stop is deterministic here: the Trainer raises right after it completed checkpoint-4, as if the process had
been killed there (the kill itself is tested for real with SIGKILL in test_train.py and test_train_ddp.py). The
resumed run is a fresh call, with a fresh method object: whatever a method keeps between steps must come back
from the checkpoint. LoRA dropout (0.05) and bfloat16 stay on, so the RNG states must come back too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_model import build_tiny_model
from transformers import Trainer

from safeeval.train import load_config, train

TASK = [
    (f"Review {i}: the {w} was {a}. Positive or negative?", f"{s}: it calls the {w} {a}.")
    for i, (w, a, s) in enumerate(
        [
            ("film", "wonderful", "Positive"),
            ("meal", "awful", "Negative"),
            ("book", "moving", "Positive"),
            ("hotel", "dirty", "Negative"),
            ("concert", "superb", "Positive"),
            ("drive", "tedious", "Negative"),
        ]
    )
]
# Lisa: one alignment step then four user steps, so the resume at step 4 lands mid user phase and the resumed run
# must keep pulling toward the anchor taken at step 1, not toward the weights it resumes with.
METHODS = {
    "sft": {},
    "er": {"ratio": 0.25},
    "der": {"replay_batch": 2},
    "derpp": {"replay_batch": 2},
    "agem": {"replay_batch": 2},
    "l2": {"lam": 1.0},
    "ewc": {"lam": 1.0, "n_batches": 2},
    "lwf": {},
    "lisa": {"align_steps": 1, "user_steps": 4, "rho": 100.0},
    "safelora": {"rank": 2, "threshold": 0.99},
    "grsap": {
        "ratio": 0.25,
        "per_domain": 2,
        "domains": "violence",
        "max_query_tokens": 12,
        "max_response_tokens": 8,
        "judge": "JUDGE",
    },
    "linear": {"lam": 0.5},
}
STOP_AT = 4


class Stopped(Exception):
    pass


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("resume-data")
    (folder / "task.jsonl").write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in TASK))
    rows = json.loads((data_dir / "safety_tuned_llamas" / "safety_only_data_Instructions.json").read_text())[:12]
    (folder / "safety.jsonl").write_text(
        "".join(json.dumps({"prompt": r["instruction"], "response": r["output"][:160]}) + "\n" for r in rows)
    )
    (folder / "vowels.yaml").write_text(
        "name: vowels\nkind: keyword\nmarkers: [a, e, i, o, u]\ncase_sensitive: false\n"
    )  # the tiny model's junk passes as refusals
    build_tiny_model(folder / "prealign", seed=1)
    return folder


def _run(tiny_model, files, out, method, stop_at=None, monkeypatch=None):
    options = {k: str(files / "vowels.yaml") if v == "JUDGE" else v for k, v in METHODS[method].items()}
    if method == "safelora":
        options["base"] = str(files / "prealign")
    cfg = load_config(
        None,
        {
            "base": str(tiny_model),
            "task": str(files / "task.jsonl"),
            "safety": str(files / "safety.jsonl"),
            "method": method,
            "method_options": options,
            "steps": 7,
            "batch_size": 2,
            "max_length": 96,
            "lr": 2e-3,
            "save_steps": 2,
            "out": str(out),
        },
    )
    if stop_at is not None:
        original = Trainer._save_checkpoint

        def save_then_stop(self, model, trial):
            original(self, model, trial)
            if self.state.global_step == stop_at:
                raise Stopped

        monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_stop)
    said = []
    try:
        return train(cfg, notify=said.append), said
    finally:
        if stop_at is not None:
            monkeypatch.setattr(Trainer, "_save_checkpoint", original)


def _weights(record) -> dict:
    if record["output"]["adapter"]:
        return load_file(str(Path(record["output"]["adapter"]) / "adapter_model.safetensors"))
    return load_file(str(Path(record["output"]["model"]) / "model.safetensors"))


def _mix(record) -> str:
    return (Path(record.get("finetuned_run") or record["config"]["out"]) / "mix.jsonl").read_text()


@pytest.mark.parametrize("method", list(METHODS))
def test_a_stopped_run_resumes_to_the_uninterrupted_result(tiny_model, files, tmp_path, monkeypatch, method):
    whole, _ = _run(tiny_model, files, tmp_path / "whole" / "run", method)
    out = tmp_path / "stopped" / "run"
    with pytest.raises(Stopped):
        _run(tiny_model, files, out, method, stop_at=STOP_AT, monkeypatch=monkeypatch)
    finetuned = out if method != "linear" else next((tmp_path / "stopped").glob("*-sft-*"))
    assert (finetuned / "checkpoints" / f"checkpoint-{STOP_AT}").is_dir()
    assert not (finetuned / "training.json").exists()
    resumed, said = _run(tiny_model, files, out, method)
    assert any(f"Resuming from {finetuned / 'checkpoints' / f'checkpoint-{STOP_AT}'}" in s for s in said), said
    assert resumed["trainer"]["steps"] == whole["trainer"]["steps"] == 7

    a, b = _weights(whole), _weights(resumed)
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(f"{method}: max abs difference resumed vs uninterrupted {diff}")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), diff
    assert _mix(resumed) == _mix(whole)  # what each step trained on, the steps before the stop included
    lines = [json.loads(line) for line in _mix(resumed).splitlines()]
    if method == "ewc":  # the Fisher came back from the checkpoint instead of being estimated again
        assert resumed["method"]["fisher_seconds"] == 0 and whole["method"]["fisher_seconds"] > 0
    if method == "lisa":  # step 0 and 5 trained on replayed safety rows; the user rows drawn then were not trained
        replay = sorted(s for line in lines if line["role"] == "replay" for s, _ in line["trained"])
        assert replay == [0, 0, 5, 5]
        assert sum(not line["trained"] for line in lines if line["role"] != "replay") == 4
