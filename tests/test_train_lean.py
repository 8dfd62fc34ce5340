"""The training step's memory cuts change no number: bool-mask dropout, logits only where the loss reads them."""

from __future__ import annotations

import pytest
import torch

from safeeval.models import load_tokenizer, resolve_model
from safeeval.train import load_config
from safeeval.train.lean import MaskDropout, lean_lora_dropout
from safeeval.train.steps import completion_ce
from safeeval.train.trainer import _load_model, collate


def test_mask_dropout_is_bit_identical_to_dropout_and_keeps_a_bool_mask():
    x = torch.randn(64, 48, requires_grad=True)
    got = {}
    for name, layer in (("dropout", torch.nn.Dropout(0.1)), ("mask", MaskDropout(0.1))):
        torch.manual_seed(7)
        saved: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t) or t, lambda t: t):
            out = layer(x)
        (grad,) = torch.autograd.grad((out * out).sum(), x)
        got[name] = (out, grad, torch.rand(4), [t.dtype for t in saved])
    (a, ga, ra, saved_a), (b, gb, rb, saved_b) = got["dropout"], got["mask"]
    assert torch.equal(a, b) and torch.equal(ga, gb) and torch.equal(ra, rb)  # the random state moved alike
    assert saved_a == [torch.float32] and saved_b == [torch.bool]
    layer = MaskDropout(0.1).eval()
    assert layer(x) is x


@pytest.fixture()
def peft_model(tiny_model, tmp_path):
    cfg = load_config(None, dict(base=str(tiny_model), task="sst2", lora_dropout=0.1, out=str(tmp_path)))
    base = resolve_model(cfg.base)
    tokenizer = load_tokenizer(base.path)
    rows = [
        {"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100, -100, -100, 8, 9, 10]},
        {"input_ids": [5, 6, 11, 12], "labels": [-100, -100, -100, 12]},
        {"input_ids": [5, 13, 14, 15, 16], "labels": [-100, -100, -100, 15, -100]},
    ]
    return cfg, base, collate(tokenizer, rows)


def test_every_lora_dropout_is_swapped_and_a_step_computes_the_same_gradients(peft_model):
    cfg, base, batch = peft_model
    grads = []
    for lean in (False, True):
        model = _load_model(cfg, base).float()  # the trainer's own loading swaps them
        dropouts = [(m, name) for m in model.modules() for name in getattr(m, "lora_dropout", {})]
        assert dropouts and all(type(m.lora_dropout[name]) is MaskDropout for m, name in dropouts)
        if not lean:  # back to peft's own nn.Dropout everywhere, which lean_lora_dropout swaps again
            for m, name in dropouts:
                m.lora_dropout[name] = torch.nn.Dropout(cfg.lora_dropout)
            assert lean_lora_dropout(model) == len(dropouts)
            for m, name in dropouts:
                m.lora_dropout[name] = torch.nn.Dropout(cfg.lora_dropout)
        model.train()
        torch.manual_seed(3)
        model(**batch, use_cache=False).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


def test_completion_loss_equals_the_models_own_loss_with_fewer_logits(peft_model):
    cfg, base, batch = peft_model
    model = _load_model(cfg, base).float().eval()  # no dropout: both passes see the same network
    full = model(**batch, use_cache=False)
    full_grads = torch.autograd.grad(full.loss, [p for p in model.parameters() if p.requires_grad])
    outputs, total, count = completion_ce(model, batch, hidden_states=True)
    loss = total / count
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    assert torch.allclose(loss, full.loss, rtol=1e-6, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(grads, full_grads, strict=True))
    # position t predicts token t + 1: the rows learn from positions 2-4, 2 and 2, so 3 of the 6 get logits
    assert outputs.logits.shape[:2] == (3, 3) and batch["input_ids"].shape == (3, 6)
    assert outputs.hidden_states[-1].shape[1] == batch["input_ids"].shape[1]  # LwF reads every position
