"""L2 regularisation toward the aligned weights (L2-SP, Li et al. 2018): lam/2 * sum ||W - W_aligned||^2."""

from ..lora import lora_factors
from ._merge import lora_sq_norm
from .base import Method, check_range


class L2(Method):
    name = "l2"
    help = "Penalise the squared distance from the aligned weights: lam/2 * sum of ||delta||^2."
    # Its gradient lam * delta is a weight decay centred on the aligned model; 0.01 is weight decay's usual strength.
    options = {"lam": 0.01}

    def check(self):
        check_range(self.name, "lam", self.opt.lam, 0.0)

    def setup(self, ctx, model):
        ctx.keep_initial(model)  # full fine-tuning: the aligned weights to measure delta from

    def loss(self, ctx, model, inputs, outputs):
        import torch

        if ctx.cfg.lora:
            terms = [lora_sq_norm(a, b, scale) for _, a, b, scale in lora_factors(model)]
        else:
            terms = [d.float().pow(2).sum() for d in ctx.deltas(model).values()]
        return self.opt.lam / 2 * torch.stack(terms).sum()
