"""Elastic Weight Consolidation (Kirkpatrick et al. 2017): a Fisher-weighted pull toward the aligned weights."""

import time

from ...errors import SafeevalError
from .. import dist
from ..lora import lora_factors, lora_layers
from .base import Method, check_range


def _weighted_sq(fisher, a, b, scale):
    return (fisher * ((b @ a) * scale).pow(2)).sum()


class EWC(Method):
    name = "ewc"
    help = "Penalise lam/2 * sum F * delta^2, F the diagonal empirical Fisher of the aligned model on safety data."
    # F is divided by its mean, so lam weighs the penalty as L2's lam does (F = 1 everywhere is L2): same default.
    options = {"lam": 0.01, "n_batches": 8}
    uses_safety = True

    def __init__(self, **given):
        super().__init__(**given)
        self.fisher = None

    def check(self):
        check_range(self.name, "lam", self.opt.lam, 0.0)
        check_range(self.name, "n_batches", self.opt.n_batches, 1)

    def state(self):
        return {"fisher": self.fisher}

    def restore(self, state):
        self.fisher = state["fisher"]

    def setup(self, ctx, model):
        import torch

        started = time.perf_counter()
        ctx.keep_initial(model)
        if self.fisher is not None:  # restored from the checkpoint a resumed run starts at
            self.fisher_seconds = 0.0
            return
        if ctx.cfg.lora:  # the Fisher of the base weights LoRA adapts, with the adapter off (the aligned model)
            params = {name: weight for name, weight, _ in lora_layers(model)}
            off = model.disable_adapter()
        else:
            params = {n: p for n, p in model.named_parameters() if p.requires_grad}
            off = torch.enable_grad()
        fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
        was_training, grads_were = model.training, {n: p.requires_grad for n, p in params.items()}
        model.eval()  # no dropout in the estimate
        for p in params.values():
            p.requires_grad_(True)
        rows, ctx.step = 0, 0
        with off:  # with several processes, each takes its share of every draw, as of a training batch
            for i in range(self.opt.n_batches):
                batch = ctx.replay_batch(draw=1000 + i)  # draws >= 1000 never meet a training step's draws
                for j in range(len(batch["input_ids"])):  # per-example squared gradients: the empirical Fisher
                    n = int(batch["attention_mask"][j].sum())
                    model(**{k: v[j : j + 1, :n] for k, v in batch.items()}).loss.backward()
                    for name, p in params.items():
                        if p.grad is not None:  # a weight this row's forward never reached has no gradient
                            fisher[name] += p.grad.float().pow(2)
                            p.grad = None
                    rows += 1
        for name, p in params.items():
            p.requires_grad_(grads_were[name])
        model.train(was_training)
        names = list(fisher)  # the processes' sums added: the Fisher of every row drawn
        fisher = dict(zip(names, dist.all_sum([fisher[n] for n in names])))
        rows = int(sum(dist.gather(rows)))
        # Divided by its mean, not its max: the heavy-tailed max would leave most weights near zero and tie lam to
        # one outlier; the mean keeps lam on L2's scale whatever the loss, model size or number of rows.
        mean = sum(f.sum() for f in fisher.values()) / sum(f.numel() for f in fisher.values())
        if not mean > 0:
            raise SafeevalError("EWC: the Fisher estimate is zero; the safety rows have no completion tokens to score.")
        self.fisher = {name: f / mean for name, f in fisher.items()}
        self.fisher_seconds = time.perf_counter() - started
        ctx.notify(f"EWC: Fisher of {len(params)} weights from {rows} safety rows in {self.fisher_seconds:.1f} s.")

    def loss(self, ctx, model, inputs, outputs):
        import torch
        from torch.utils.checkpoint import checkpoint

        if ctx.cfg.lora:  # recomputed in backward, so no layer's full B @ A stays in memory
            terms = [
                checkpoint(_weighted_sq, self.fisher[name], a, b, scale, use_reentrant=False)
                for name, a, b, scale in lora_factors(model)
            ]
        else:
            terms = [(self.fisher[n] * d.float().pow(2)).sum() for n, d in ctx.deltas(model).items()]
        return self.opt.lam / 2 * torch.stack(terms).sum()

    def describe(self):
        return {**super().describe(), "fisher_seconds": round(getattr(self, "fisher_seconds", 0.0), 2)}
