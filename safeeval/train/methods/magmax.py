"""MagMax (Marczak et al. 2024): per entry, keep the larger-magnitude task vector relative to the pre-aligned base.

tau_align = aligned - base and tau_ft = fine-tuned - base; M = base + (whichever has the larger |entry|).
The paper adds the merged vector to the base with its own coefficient; here lam interpolates from the aligned
model (lam = 0) to M (lam = 1), like every merge in this folder.
"""

from ...errors import SafeevalError
from ._merge import MergeMethod, load_weights, matching


def max_magnitude(*vectors):
    """Entry by entry, the value of largest magnitude among the vectors (the first one on a tie)."""
    import torch

    stacked = torch.stack(vectors)
    return stacked.gather(0, stacked.abs().argmax(0, keepdim=True))[0]


class MagMax(MergeMethod):
    name = "magmax"
    help = "Per entry, the larger-magnitude of (aligned - base, fine-tuned - base), added to `base` (lam interpolates)."
    options = {"lam": 0.5, "base": None}

    def check(self):
        super().check()
        if not self.opt.base:
            raise SafeevalError(
                "Method 'magmax' needs option base: the pre-alignment model the aligned one was "
                "trained from (a folder, alias or Hub id)."
            )

    def prepare(self, ctx):
        self.base = load_weights(self.opt.base)

    def edit(self, name, aligned, tau):
        tau_align = aligned.float() - matching(self.base, name, aligned, self.opt.base)
        return max_magnitude(tau_align, tau_align + tau) - tau_align
