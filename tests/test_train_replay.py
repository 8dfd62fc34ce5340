"""DER, DER++, A-GEM, LwF and Lisa: each trains, and each keeps the property that defines it."""

from __future__ import annotations

import json

import pytest
import torch

from safeeval.errors import SafeevalError
from safeeval.train import load_config, train
from safeeval.train.methods import agem, make_method
from safeeval.train.methods.lisa import Lisa

TASK = [
    (f"Review: the {w} was {a}. Is this review positive or negative?", f"The review is {s}: it calls the {w} {a}.")
    for w, a, s in [
        ("film", "wonderful", "positive"),
        ("meal", "awful", "negative"),
        ("book", "moving", "positive"),
        ("hotel", "dirty", "negative"),
        ("concert", "superb", "positive"),
        ("service", "slow", "negative"),
        ("garden", "lovely", "positive"),
        ("drive", "tedious", "negative"),
    ]
]


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_dir):
    """The user's data (8 rows) and a small safety set (16 real refusals from Safety-Tuned LLaMAs)."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "task.jsonl").write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in TASK))
    rows = json.loads((data_dir / "safety_tuned_llamas" / "safety_only_data_Instructions.json").read_text())[:16]
    (folder / "safety.jsonl").write_text(
        "".join(json.dumps({"prompt": r["instruction"], "response": r["output"]}) + "\n" for r in rows)
    )
    return {
        "task": folder / "task.jsonl",
        "safety": folder / "safety.jsonl",
        "safety_rows": [(r["instruction"], r["output"]) for r in rows],
    }


def run(tiny_model, files, out, method, options=None, **settings):
    """A few steps over the same 8 rows (several epochs), one log line per step."""
    values = {
        "base": str(tiny_model),
        "task": str(files["task"]),
        "safety": str(files["safety"]),
        "method": method,
        "method_options": options or {},
        "steps": 6,
        "batch_size": 4,
        "examples": 8,
        "max_length": 128,
        "lr": 3e-3,
        "out": str(out),
        "save_steps": 1,
    }
    values.update(settings)
    return train(load_config(None, values), notify=lambda m: None)


def steps(record) -> list[dict]:
    return [entry for entry in record["trainer"]["log_history"] if "loss" in entry]


def trained_and_aligned(record, tiny_model):
    """(trained model, aligned model) from a finished run's output folder."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    aligned = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    if record["output"]["adapter"]:
        base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        return PeftModel.from_pretrained(base, record["output"]["adapter"]), aligned
    return AutoModelForCausalLM.from_pretrained(record["output"]["model"], dtype=torch.float32), aligned


@torch.no_grad()
def gap(record, tiny_model, chats, what: str) -> float:
    """Mean squared difference between the trained and the aligned model's log-probabilities (or last hidden states)
    over
    every token of the given chats."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    trained, aligned = trained_and_aligned(record, tiny_model)
    total = []
    for prompt, response in chats:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :128]
        a, b = (m(input_ids=ids, output_hidden_states=True) for m in (trained, aligned))
        if what == "logprobs":
            x, y = a.logits.log_softmax(-1), b.logits.log_softmax(-1)
        else:
            x, y = a.hidden_states[-1], b.hidden_states[-1]
        total.append(((x - y) ** 2).mean())
    return float(torch.stack(total).mean())


@pytest.fixture(scope="module")
def sft_run(tiny_model, files, tmp_path_factory):
    return run(tiny_model, files, tmp_path_factory.mktemp("sft") / "run", "sft")


@pytest.mark.parametrize(
    "method,metric", [("der", "der_distance"), ("derpp", "derpp_replay_ce"), ("lwf", "lwf_distance")]
)
def test_method_lowers_its_total_loss(tiny_model, files, tmp_path, method, metric):
    logged = steps(run(tiny_model, files, tmp_path / "run", method))
    assert len(logged) == 6 and all(metric in e for e in logged)  # its term is part of every step
    assert logged[-1]["loss"] < logged[0]["loss"]
    assert logged[0][metric] >= 0 and logged[-1]["method_loss"] > 0
    if method != "derpp":  # the aligned model is the adapter switched off: equal to the model at step 0 only
        assert logged[0][metric] == 0 and logged[-1][metric] > 0


@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_der_with_huge_alpha_keeps_safety_outputs_near_the_aligned_model(tiny_model, files, tmp_path, sft_run, loss):
    der = run(tiny_model, files, tmp_path / "run", "der", {"alpha": 1e4, "replay_batch": 4, "loss": loss})
    chats = files["safety_rows"]
    kept, drifted = gap(der, tiny_model, chats, "logprobs"), gap(sft_run, tiny_model, chats, "logprobs")
    assert kept < 0.2 * drifted, (kept, drifted)


def test_lwf_with_huge_beta_keeps_hidden_states_near_the_aligned_model(tiny_model, files, tmp_path, sft_run):
    lwf = run(tiny_model, files, tmp_path / "run", "lwf", {"beta": 1e4})
    kept, drifted = gap(lwf, tiny_model, TASK, "hidden"), gap(sft_run, tiny_model, TASK, "hidden")
    assert kept < 0.2 * drifted, (kept, drifted)


@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_der_distance_covers_completion_predictions_only(tiny_model, loss):
    """Equal to the textbook formula on full logits: MSE, or KL(aligned || current), over the positions whose
    next token is a completion token, whatever the prompt and padding around them."""
    import contextlib
    from types import SimpleNamespace

    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    aligned = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    current = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in current.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ids = torch.randint(10, 400, (3, 12))
    labels, mask = ids.clone(), torch.ones_like(ids)
    labels[0, :5] = labels[1, :3] = labels[2, :7] = -100  # prompts of different lengths
    labels[1, 10:], mask[1, 10:] = -100, 0  # and right padding
    ctx = SimpleNamespace(aligned=lambda model: contextlib.nullcontext(aligned), global_mean=lambda t, n: t / n)
    with torch.no_grad():
        got = make_method("der", {"loss": loss}).distance(
            ctx, current, {"input_ids": ids, "labels": labels, "attention_mask": mask}
        )
        keep = labels[:, 1:] != -100
        c, a = (m(input_ids=ids, attention_mask=mask).logits[:, :-1][keep] for m in (current, aligned))
    p, q = a.log_softmax(-1), c.log_softmax(-1)
    want = F.mse_loss(c, a) if loss == "mse" else (p.exp() * (p - q)).sum(-1).mean()
    assert float(got) == pytest.approx(float(want), rel=1e-4) and float(want) > 0


def test_agem_projection_removes_the_conflict():
    g = [torch.tensor([1.0, 0.0]), torch.tensor([[2.0]])]
    r = [torch.tensor([-1.0, 1.0]), torch.tensor([[-1.0]])]  # g.r = -3 < 0
    assert agem.project(g, r)
    dot = sum((a * b).sum() for a, b in zip(g, r))
    assert abs(float(dot)) < 1e-6  # on the boundary: g.r = 0
    # g - (g.r / r.r) r with g.r = -3, r.r = 3
    assert torch.allclose(g[0], torch.tensor([0.0, 1.0])) and torch.allclose(g[1], torch.tensor([[1.0]]))
    agreeing = [torch.tensor([1.0, 1.0])]
    assert not agem.project(agreeing, [torch.tensor([1.0, 0.0])])
    assert torch.equal(agreeing[0], torch.tensor([1.0, 1.0]))  # no conflict: left alone


def test_agem_training_never_steps_against_the_safety_gradient(tiny_model, files, tmp_path, monkeypatch):
    seen = []

    def checked(grads, refs):
        before = float(sum((g.float() * r.float()).sum() for g, r in zip(grads, refs)))
        projected = project(grads, refs)
        after = float(sum((g.float() * r.float()).sum() for g, r in zip(grads, refs)))
        norms = float(sum((g.float() ** 2).sum() for g in grads) * sum((r.float() ** 2).sum() for r in refs)) ** 0.5
        seen.append((before, projected, after, norms))
        return projected

    project = agem.project
    monkeypatch.setattr(agem, "project", checked)
    logged = steps(run(tiny_model, files, tmp_path / "run", "agem"))
    assert len(seen) == 6
    assert all(after >= -1e-4 * norms for _, _, after, norms in seen)
    assert any(p for _, p, _, _ in seen) and all(p == (before < 0) for before, p, _, _ in seen)
    assert [e["agem_projected"] for e in logged] == [float(p) for _, p, _, _ in seen]
    assert logged[-1]["loss"] < logged[0]["loss"]


def test_lisa_alternates_safety_and_user_steps(tiny_model, files, tmp_path, monkeypatch):
    batches, proximal = {}, {}
    batch, loss = Lisa.batch, Lisa.loss

    def record_batch(self, ctx, model, inputs):
        chosen = batch(self, ctx, model, inputs)
        batches[ctx.step] = [
            ctx.tokenizer.decode(row[mask.bool()]) for row, mask in zip(chosen["input_ids"], chosen["attention_mask"])
        ]
        return chosen

    def record_loss(self, ctx, model, inputs, outputs):
        value = loss(self, ctx, model, inputs, outputs)
        proximal[ctx.step] = float(value.detach())
        return value

    monkeypatch.setattr(Lisa, "batch", record_batch)
    monkeypatch.setattr(Lisa, "loss", record_loss)
    logged = steps(run(tiny_model, files, tmp_path / "run", "lisa", {"align_steps": 1, "user_steps": 4}))

    def source(text):
        safety = any(p in text for p, _ in files["safety_rows"])
        user = any(p in text for p, _ in TASK)
        assert safety != user, text
        return "align" if safety else "user"

    states = ["align", "user", "user", "user", "user", "align"]
    assert [{source(t) for t in batches[s]} for s in range(6)] == [{s} for s in states]
    assert [e["lisa_align"] for e in logged] == [float(s == "align") for s in states]
    assert proximal[0] == proximal[1] == proximal[5] == 0  # the anchor is taken at each switch
    assert proximal[2] > 0 and proximal[4] > proximal[2]  # and the pull grows while a state lasts
    user = [e["loss"] for e, s in zip(logged, states) if s == "user"]
    assert user[-1] < user[0]


@pytest.mark.parametrize("method,metric", [("der", "der_distance"), ("lwf", "lwf_distance")])
def test_full_fine_tuning_compares_against_a_frozen_copy(tiny_model, files, tmp_path, method, metric):
    record = run(tiny_model, files, tmp_path / "run", method, lora=False, steps=3, lr=1e-3)
    logged = steps(record)
    assert record["output"]["model"] and not record["output"]["adapter"]
    # equal to the trained model before the first update, apart from it after: the copy is not updated
    assert logged[0][metric] == 0 and logged[-1][metric] > 0


@pytest.mark.parametrize(
    "method,options,message",
    [
        ("der", {"loss": "foo"}, "option loss must be one of mse, kl; got 'foo'"),
        ("der", {"alpha": -1}, "option alpha must lie in >= 0.0; got -1.0"),
        ("derpp", {"beta": -0.5}, "option beta must lie in >= 0.0"),
        ("lwf", {"target": "attention"}, "option target must be one of hidden, logits"),
        ("lwf", {"temperature": 0}, "option temperature must be positive"),
        ("lisa", {"align_steps": 0}, "option align_steps must lie in >= 1; got 0"),
        ("agem", {"replay_batch": -2}, "option replay_batch must lie in >= 0"),
    ],
)
def test_bad_option_values_are_refused_in_a_sentence(method, options, message):
    with pytest.raises(SafeevalError, match=message.replace("(", r"\(").replace("+", r"\+")):
        make_method(method, options)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(SafeevalError) as err:
        make_method("derpp", {"gamma": 1})
    text = str(err.value)
    assert "['gamma']" in text and all(f"{k} (default" in text for k in ("alpha", "beta", "loss", "replay_batch"))
