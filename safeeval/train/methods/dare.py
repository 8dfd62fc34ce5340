"""DARE (Yu et al. 2024): drop each task-vector entry with probability 1 - density, rescale the rest by 1/density."""

from ._merge import MergeMethod


class Dare(MergeMethod):
    name = "dare"
    help = "Randomly keep a `density` share of the task vector's entries (rescaled by 1/density), add lam times it."
    options = {"lam": 0.5, "density": 0.2}

    def prepare(self, ctx):
        import torch

        torch.manual_seed(ctx.cfg.seed)  # peft draws the drop masks from torch's global generator

    def edit(self, name, aligned, tau):
        import torch
        from peft.utils.merge_utils import dare_linear

        return dare_linear([tau], torch.ones(1, device=tau.device), self.opt.density)
