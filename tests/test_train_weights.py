"""Weight-space methods: the L2 and EWC penalties, the post-hoc merges, and Safe LoRA's projection."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from tiny_model import build_tiny_model

from safeeval.errors import SafeevalError
from safeeval.train import load_config, train
from safeeval.train.lora import lora_layers
from safeeval.train.methods import make_method
from safeeval.train.methods._merge import lora_sq_norm
from safeeval.train.methods.ewc import EWC
from safeeval.train.methods.l2 import L2
from safeeval.train.methods.magmax import max_magnitude


def _run(tiny_model, data_dir, out, method, notify=None, lora=True, **options):
    cfg = load_config(
        None,
        {
            "base": str(tiny_model),
            "task": "sst2",
            "method": method,
            "method_options": options,
            "steps": 4,
            "batch_size": 4,
            "max_length": 256,
            "lr": 5e-3,
            "data_dir": str(data_dir),
            "out": str(out),
            "save_steps": 4,
            "lora": lora,
        },
    )
    return train(cfg, notify=notify or (lambda m: None))


def _weights(folder) -> dict:
    return load_file(Path(folder) / "model.safetensors")


def _taus(tiny_model, adapter) -> dict:
    """tau = scale * B @ A of a saved adapter, per base weight name, in float32."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16), adapter)
    with torch.no_grad():
        return {name: delta.float() for name, _, delta in lora_layers(model)}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    """The 'pre-alignment' model: same architecture as tiny_model, other random weights."""
    return build_tiny_model(tmp_path_factory.mktemp("prealign") / "model", seed=1)


@pytest.fixture(scope="module")
def merges(tiny_model, data_dir, tmp_path_factory):
    """A folder of merge runs sharing one sft run (trained by the first merge, linear with lam = 1)."""
    root = tmp_path_factory.mktemp("merges")
    first = _run(tiny_model, data_dir, root / "linear-1", "linear", lam=1.0)
    sft = json.loads((Path(first["finetuned_run"]) / "training.json").read_text())

    def run(method, out, notify=None, **options):
        return _run(tiny_model, data_dir, root / out, method, notify=notify, **options)

    return SimpleNamespace(root=root, first=first, sft=sft, run=run, taus=_taus(tiny_model, sft["output"]["adapter"]))


# -- penalties --


def _spy(monkeypatch, cls):
    """Record every call of the method's loss hook: the penalty, the CE, and the penalty computed here from deltas."""
    seen = []
    original = cls.loss

    def loss(self, ctx, model, inputs, outputs):
        value = original(self, ctx, model, inputs, outputs)
        with torch.no_grad():
            deltas = ctx.deltas(model)
            weight = getattr(self, "fisher", {n: 1.0 for n in deltas})
            direct = self.opt.lam / 2 * sum((weight[n] * d.float().pow(2)).sum() for n, d in deltas.items())
        frozen = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
        seen.append(SimpleNamespace(penalty=value.item(), ce=outputs.loss.item(), direct=float(direct), frozen=frozen))
        return value

    monkeypatch.setattr(cls, "loss", loss)
    return seen


def test_lora_sq_norm_is_exact():
    torch.manual_seed(0)
    a, b = torch.randn(4, 30, dtype=torch.float64), torch.randn(20, 4, dtype=torch.float64)
    assert torch.allclose(lora_sq_norm(a, b, 2.0), ((2.0 * b @ a) ** 2).sum())


@pytest.mark.parametrize("cls, options", [(L2, {"lam": 0.5}), (EWC, {"lam": 0.5, "n_batches": 1})])
def test_penalty_zero_at_start_then_positive(cls, options, tiny_model, data_dir, tmp_path, monkeypatch):
    seen = _spy(monkeypatch, cls)
    messages = []
    record = _run(tiny_model, data_dir, tmp_path / "run", cls.name, notify=messages.append, **options)
    assert len(seen) == 4
    assert seen[0].penalty == 0.0  # LoRA's B starts at zero: no distance from the aligned model yet
    assert all(s.penalty > 0 for s in seen[1:])
    for s in seen:  # the cheap LoRA form (L2) and the checkpointed one (EWC) equal the penalty from full deltas
        assert s.penalty == pytest.approx(s.direct, rel=1e-4, abs=1e-12)
        assert s.frozen == []  # EWC gave the base weights gradients for its Fisher only
    assert seen[-1].ce < seen[0].ce
    assert record["trainer"]["steps"] == 4
    if cls is EWC:
        assert any(m.startswith("EWC: Fisher of 14 weights from 4 safety rows") for m in messages)
        assert record["method"]["fisher_seconds"] > 0


def test_ewc_fisher_is_mean_normalised_and_uneven(tiny_model, data_dir, tmp_path, monkeypatch):
    kept = {}
    original = EWC.setup

    def setup(self, ctx, model):
        original(self, ctx, model)
        kept.update(fisher=self.fisher, names=set(ctx.deltas(model)))
        raise SafeevalError("stop after setup")

    monkeypatch.setattr(EWC, "setup", setup)
    with pytest.raises(SafeevalError, match="stop after setup"):
        _run(tiny_model, data_dir, tmp_path / "run", "ewc", n_batches=1)
    fisher = kept["fisher"]
    assert set(fisher) == kept["names"]  # the base weights LoRA adapts
    flat = torch.cat([f.flatten() for f in fisher.values()])
    assert flat.dtype == torch.float32 and flat.min() >= 0
    assert flat.mean().item() == pytest.approx(1.0, rel=1e-4)
    assert flat.max() > 10 * flat.median()  # importance differs between weights, else EWC would be L2


# -- merges --


@pytest.mark.parametrize("method", ["linear", "task-arithmetic", "ties", "dare", "magmax"])
def test_merge_lam0_returns_aligned_exactly(method, merges, tiny_model, base_model):
    options = {"lam": 0.0, **({"base": str(base_model)} if method == "magmax" else {})}
    record = merges.run(method, f"{method}-0", **options)
    assert record["output"]["adapter"] is None
    merged, aligned = _weights(record["output"]["model"]), _weights(tiny_model)
    assert merged.keys() == aligned.keys()
    assert all(torch.equal(merged[k], aligned[k]) for k in aligned)


def test_linear_lam1_equals_merged_finetuned(merges, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    reference = PeftModel.from_pretrained(model, merges.sft["output"]["adapter"]).merge_and_unload().state_dict()
    merged, aligned = _weights(merges.first["output"]["model"]), _weights(tiny_model)
    for name, tau in merges.taus.items():
        ours = merged[name].float() - aligned[name].float()
        theirs = reference[name].float() - aligned[name].float()
        assert tau.norm() > 0.05 * aligned[name].float().norm()  # the fine-tuning moved the weights visibly
        assert (ours - theirs).norm() < 0.05 * theirs.norm()  # equal up to bf16 rounding
    untouched = set(aligned) - set(merges.taus)
    assert untouched and all(torch.equal(merged[k], aligned[k]) for k in untouched)


def test_ties_keeps_the_top_density_share(merges, tiny_model):
    record = merges.run("ties", "ties-1", lam=1.0, density=0.2)
    merged, aligned = _weights(record["output"]["model"]), _weights(tiny_model)
    for name, tau in merges.taus.items():
        changed = merged[name] != aligned[name]
        k = int(0.2 * tau.numel())
        top = torch.zeros(tau.numel(), dtype=torch.bool)
        top[tau.abs().flatten().topk(k).indices] = True
        assert 0.15 * tau.numel() < changed.sum() <= k  # bf16 rounding may hide a few of the kept entries
        assert not (changed.flatten() & ~top).any()  # only the largest-magnitude entries moved


def test_dare_is_seeded_and_rescales(merges, tiny_model):
    first = merges.run("dare", "dare-a", lam=1.0, density=0.5)
    again = merges.run("dare", "dare-b", lam=1.0, density=0.5)
    a, b, aligned = _weights(first["output"]["model"]), _weights(again["output"]["model"]), _weights(tiny_model)
    assert all(torch.equal(a[k], b[k]) for k in aligned)
    for name, tau in merges.taus.items():
        changed = a[name] != aligned[name]
        assert 0.4 < changed.float().mean() < 0.55
        moved, kept = (a[name].float() - aligned[name].float())[changed], tau[changed]
        slope = (moved * kept).sum() / (kept * kept).sum()  # least squares: moved = slope * tau
        assert slope.item() == pytest.approx(2.0, rel=0.05)  # kept entries rescaled by 1 / density


def test_max_magnitude_picks_the_larger_entry():
    a = torch.tensor([[1.0, -3.0], [0.5, 2.0]])
    b = torch.tensor([[-2.0, 1.0], [-0.5, -5.0]])
    assert torch.equal(max_magnitude(a, b), torch.tensor([[-2.0, -3.0], [0.5, -5.0]]))  # a tie keeps the first


def test_magmax_merges_per_entry_by_magnitude(merges, tiny_model, base_model):
    record = merges.run("magmax", "magmax-1", lam=1.0, base=str(base_model))
    merged, aligned, base = _weights(record["output"]["model"]), _weights(tiny_model), _weights(base_model)
    name = "model.layers.0.self_attn.q_proj.weight"
    tau_align = aligned[name].float() - base[name].float()
    tau_ft = tau_align + merges.taus[name]
    picks_ft = tau_ft.abs() > tau_align.abs()
    assert 0.2 < picks_ft.float().mean() < 0.8  # both branches occur
    expected = (base[name].float() + torch.where(picks_ft, tau_ft, tau_align)).to(torch.bfloat16).float()
    torch.testing.assert_close(merged[name].float(), expected, rtol=2**-7, atol=1e-6)  # within one bf16 step
    assert torch.equal(merged["model.embed_tokens.weight"], aligned["model.embed_tokens.weight"])


def test_merges_share_one_sft_run(merges):
    path = Path(merges.first["finetuned_run"]) / "training.json"
    before = path.stat().st_mtime_ns
    messages = []
    record = merges.run("task-arithmetic", "ta", notify=messages.append, lam=1.5)
    assert record["finetuned_run"] == merges.first["finetuned_run"]
    assert path.stat().st_mtime_ns == before
    assert any("already holds this finished run" in m for m in messages)


def test_merges_after_full_finetuning(tiny_model, data_dir, tmp_path):
    half = _run(tiny_model, data_dir, tmp_path / "half", "linear", lora=False, lam=0.5)
    zero = _run(tiny_model, data_dir, tmp_path / "zero", "linear", lora=False, lam=0.0)
    sft = json.loads((Path(half["finetuned_run"]) / "training.json").read_text())
    aligned, finetuned = _weights(tiny_model), _weights(sft["output"]["model"])
    merged, restored = _weights(half["output"]["model"]), _weights(zero["output"]["model"])
    assert all(torch.equal(restored[k], aligned[k].to(restored[k].dtype)) for k in aligned)
    moved = [k for k in aligned if not torch.equal(finetuned[k], aligned[k].float())]
    assert len(moved) > 10
    for k in moved:
        expected = aligned[k].float() + 0.5 * (finetuned[k] - aligned[k].float())
        torch.testing.assert_close(merged[k], expected, rtol=1e-6, atol=1e-7)


# -- Safe LoRA --


def _projector(aligned, base, name, rank):
    u = torch.linalg.svd(aligned[name].float() - base[name].float(), full_matrices=False).U[:, :rank]
    return u @ u.T


def test_safelora_projects_onto_the_alignment_subspace(merges, tiny_model, data_dir, base_model):
    messages = []
    record = merges.run("safelora", "safelora", notify=messages.append, base=str(base_model), rank=8, threshold=0.5)
    assert any("projected 14 of 14 LoRA layers" in m for m in messages)  # random base: every update is off-subspace
    assert record["method"]["projected_layers"] == 14
    ours = load_file(Path(record["output"]["adapter"]) / "adapter_model.safetensors")
    plain = load_file(Path(merges.sft["output"]["adapter"]) / "adapter_model.safetensors")
    aligned, base = _weights(tiny_model), _weights(base_model)
    for name in merges.taus:
        key = "base_model.model." + name.removesuffix(".weight")
        p = _projector(aligned, base, name, 8)
        b, a, b_sft = ours[key + ".lora_B.weight"], ours[key + ".lora_A.weight"], plain[key + ".lora_B.weight"]
        assert torch.equal(a, plain[key + ".lora_A.weight"])  # trained exactly like sft
        torch.testing.assert_close(b, p @ b_sft, rtol=1e-4, atol=1e-6)  # B replaced by P B
        torch.testing.assert_close(p @ b, b, rtol=1e-4, atol=1e-6)  # projecting twice == once
        update = b @ a
        assert ((update - p @ update).norm() / update.norm()).item() < 1e-4  # the update lies in span(U_k)


def test_safelora_projects_only_layers_below_threshold(tiny_model, base_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    messages = []
    ctx = SimpleNamespace(cfg=SimpleNamespace(lora=True), notify=messages.append)
    method = make_method("safelora", {"base": str(base_model), "rank": 8, "threshold": 0.5})
    method.setup(ctx, model)
    layers = dict(model.named_modules())
    inside = layers["base_model.model.model.layers.0.self_attn.q_proj"].lora_B["default"].weight
    outside = layers["base_model.model.model.layers.1.self_attn.v_proj"].lora_B["default"].weight
    torch.manual_seed(0)
    with torch.no_grad():
        inside.copy_(method.bases["model.layers.0.self_attn.q_proj.weight"] @ torch.randn(8, 4))  # cosine 1
        outside.normal_()  # a random update: cosine about sqrt(8/128)
    kept, drawn = inside.detach().clone(), outside.detach().clone()
    method.finish(ctx, model)
    assert torch.equal(inside, kept)  # aligned with the subspace: left alone
    u = method.bases["model.layers.1.self_attn.v_proj.weight"]
    torch.testing.assert_close(outside, u @ (u.T @ drawn))  # least aligned: projected
    assert "projected 1 of 4" in messages[-1]


# -- bad input --


@pytest.mark.parametrize(
    "method, options, match",
    [
        ("magmax", {}, "needs option base"),
        ("safelora", {}, "needs option base"),
        ("l2", {"lam": -1.0}, "lam must lie in"),
        ("ewc", {"lam": -0.1}, "lam must lie in"),
        ("ewc", {"n_batches": 0}, "n_batches must lie in"),
        ("linear", {"lam": 1.5}, r"lam must lie in \[0.0, 1.0\]"),
        ("task-arithmetic", {"lam": -0.5}, "lam must lie in"),
        ("ties", {"density": 0.0}, r"density must lie in \(0, 1\]"),
        ("dare", {"density": 1.5}, r"density must lie in \(0, 1\]"),
        ("magmax", {"base": "x", "lam": -1.0}, "lam must lie in"),
        ("safelora", {"base": "x", "rank": 0}, "rank must lie in"),
        ("safelora", {"base": "x", "threshold": 2.0}, "threshold must lie in"),
    ],
)
def test_bad_options(method, options, match):
    with pytest.raises(SafeevalError, match=match):
        make_method(method, options)


def test_good_options_pass():
    assert make_method("task-arithmetic", {"lam": 1.5}).opt.lam == 1.5  # extrapolation is allowed
    assert make_method("ties", {"density": 1.0}).opt.density == 1.0


def test_safelora_needs_lora(tiny_model, data_dir, tmp_path, base_model):
    with pytest.raises(SafeevalError, match="needs lora: true"):
        _run(tiny_model, data_dir, tmp_path / "run", "safelora", lora=False, base=str(base_model))
