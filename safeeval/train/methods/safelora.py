"""Safe LoRA (Hsu et al. 2024): project the least safety-aligned LoRA updates onto the alignment subspace.

Per LoRA layer, V = W_aligned - W_base (the pre-alignment model) and P = U_k U_k^T with U_k V's top-`rank` left
singular vectors. The paper's C = V V^T / ||V||_F is not a projector: its eigenvalues are sigma_i^2 / ||V||_F, so
C C != C save in special cases (V of rank one and unit norm) and projecting twice would change the update again.
The exact projector onto all of V's columns would be about the identity (V is full rank after fine-tuning), hence
the top-k truncation. A layer's update delta = B A becomes P delta = (P B) A when cos(P delta, delta) < threshold,
as in the paper: the layers whose update lies least in the alignment subspace are projected. For an orthogonal P
that cosine is ||P delta|| / ||delta||, the share of the update inside the subspace.
"""

from ...errors import SafeevalError
from .. import dist
from ..lora import lora_factors, lora_layers
from ._merge import load_weights, lora_sq_norm, matching
from .base import Method, check_range


class SafeLoRA(Method):
    name = "safelora"
    help = "Train like sft, then project each LoRA update whose cosine with the alignment subspace is below threshold."
    # rank: directions kept per layer; alignment's weight change is dominated by a few singular directions, and a
    # subspace as small as a LoRA update's keeps the projection a real constraint (the paper's C has no rank).
    options = {"base": None, "rank": 8, "threshold": 0.5}

    def check(self):
        if not self.opt.base:
            raise SafeevalError(
                "Method 'safelora' needs option base: the pre-alignment model the aligned one was "
                "trained from (a folder, alias or Hub id)."
            )
        check_range(self.name, "rank", self.opt.rank, 1)
        check_range(self.name, "threshold", self.opt.threshold, 0.0, 1.0)

    def setup(self, ctx, model):
        if not ctx.cfg.lora:
            raise SafeevalError("Method 'safelora' projects LoRA updates; it needs lora: true.")
        # Before training, so that a base of another architecture stops the run now; on the main process only,
        # which alone projects (finish runs there), while the others wait for its verdict.
        dist.from_main(lambda: setattr(self, "bases", self.subspaces(model)))

    def subspaces(self, model) -> dict:
        """Weight name -> U_k, the alignment subspace of that layer."""
        import torch

        base = load_weights(self.opt.base)
        bases = {}
        with torch.no_grad():
            for name, weight, _ in lora_layers(model):
                v = weight.float() - matching(base, name, weight, self.opt.base)
                if v.any():  # a layer the alignment left unchanged has no subspace to project on
                    bases[name] = torch.linalg.svd(v, full_matrices=False).U[:, : self.opt.rank]
        return bases

    def finish(self, ctx, model):
        import torch

        self.projected = 0
        with torch.no_grad():
            for name, a, b, _ in lora_factors(model):
                u = self.bases.get(name)
                before = lora_sq_norm(a.float(), b.float())
                if u is None or before == 0:
                    continue
                pb = u @ (u.T @ b.float())
                if (lora_sq_norm(a.float(), pb) / before).sqrt() < self.opt.threshold:
                    b.copy_(pb)
                    self.projected += 1
        ctx.notify(
            f"Safe LoRA: projected {self.projected} of {len(self.bases)} LoRA layers onto the alignment "
            f"subspace (cosine below {self.opt.threshold})."
        )
        return model

    def describe(self):
        return {**super().describe(), "projected_layers": getattr(self, "projected", None)}
