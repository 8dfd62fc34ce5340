"""TIES-Merging (Yadav et al. 2023): trim the task vector to its largest entries before adding it.

With one task vector the sign election and disjoint mean keep the trimmed vector as it is; only trimming acts.
"""

from ._merge import MergeMethod


class Ties(MergeMethod):
    name = "ties"
    help = "Keep the top `density` share of each weight's task vector by magnitude, add lam times it."
    options = {"lam": 0.5, "density": 0.2}

    def edit(self, name, aligned, tau):
        import torch
        from peft.utils.merge_utils import ties

        return ties([tau], torch.ones(1, device=tau.device), self.opt.density)
