"""Shared by the weight-space methods: LoRA factors, a second model's weights, and the merges' base class."""

from __future__ import annotations

from ...errors import SafeevalError
from ..lora import lora_layers
from .base import Method, check_range


def lora_sq_norm(a, b, scale: float = 1.0):
    """||scale * B @ A||_F^2 = scale^2 * sum((B^T B) * (A A^T)), exact, without the out x in product."""
    return scale * scale * ((b.T @ b) * (a @ a.T)).sum()


def load_weights(name: str) -> dict:
    """Every weight of another model (the pre-alignment base), in its checkpoint's dtype, by state_dict name."""
    from transformers import AutoModelForCausalLM

    from ...models import resolve_model

    return AutoModelForCausalLM.from_pretrained(resolve_model(name).path, dtype="auto").state_dict()


def matching(weights: dict, name: str, like, source: str):
    """weights[name] in float32 on `like`'s device, refusing a model of another architecture."""
    import torch

    w = weights.get(name)
    if w is None or w.shape != like.shape:
        raise SafeevalError(
            f"Base model {source} does not match the aligned model's architecture (weight {name}); "
            "pass the model the aligned one was trained from."
        )
    # Rounded to `like`'s dtype first: a float32 base against a bfloat16 aligned model would otherwise add
    # rounding noise to every entry of (aligned - base), burying the low-rank alignment update under it.
    return w.to(like.device, like.dtype).to(torch.float32)


def check_density(method: str, density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise SafeevalError(f"Method '{method}': option density must lie in (0, 1]; got {density}.")


class MergeMethod(Method):
    """W = W_aligned + lam * edit(tau), tau = W_finetuned - W_aligned, for every weight the fine-tuning changed
    (the LoRA layers, or every parameter after full fine-tuning); the result is a plain transformers model."""

    post_hoc = True
    parameter_sharding = True  # its sft run shards as sft does; the merge runs on one process
    options = {"lam": 0.5}
    lam_max: float | None = None

    def check(self):
        check_range(self.name, "lam", self.opt.lam, 0.0, self.lam_max)
        if "density" in self.options:
            check_density(self.name, self.opt.density)

    def prepare(self, ctx) -> None:
        """Before the first edit (load another model, seed a generator)."""

    def edit(self, name: str, aligned, tau):
        """The merged task vector M - W_aligned, in float32."""
        return tau

    def finish(self, ctx, model):
        import torch

        with torch.no_grad():
            if ctx.cfg.lora:  # tau = scale * B @ A, one layer at a time, written into the (aligned) base weights
                pairs = ((name, weight, weight, delta) for name, weight, delta in lora_layers(model))
            else:
                pairs = (
                    (name, p, ctx._initial[name], p.float() - ctx._initial[name].float())
                    for name, p in model.named_parameters()
                )
            if self.opt.lam != 0:
                self.prepare(ctx)
            for name, weight, aligned, tau in pairs:
                if self.opt.lam == 0:  # exactly the aligned weights, no float round trip
                    weight.copy_(aligned)
                else:
                    weight.copy_(aligned.float() + self.opt.lam * self.edit(name, aligned, tau.float()))
        return model.unload() if ctx.cfg.lora else model
