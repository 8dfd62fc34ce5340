"""A-GEM (Chaudhry et al. 2019): an update may not raise the loss on safety data, to first order."""

from .base import Method, check_range


def project(grads: list, refs: list) -> bool:
    """In place: g <- g - (g.r / r.r) r over all tensors together, when g.r < 0; returns whether it projected."""
    dot = sum((g.float() * r.float()).sum() for g, r in zip(grads, refs))
    if dot >= 0:
        return False
    coef = dot / sum((r.float() ** 2).sum() for r in refs)  # r.r > 0, since g.r < 0
    for g, r in zip(grads, refs):
        g.sub_((coef * r.float()).to(g.dtype))
    return True


class AGEM(Method):
    name = "agem"
    help = (
        "A-GEM: before each optimizer step, a gradient that conflicts with the gradient on a safety replay "
        "batch is projected onto the plane where the two no longer conflict."
    )
    options = {"replay_batch": 0}  # 0 = batch_size
    uses_safety = True

    def check(self):
        check_range(self.name, "replay_batch", self.opt.replay_batch, 0)

    def callback(self, ctx):
        import torch
        from transformers import TrainerCallback

        from .. import dist

        size = self.opt.replay_batch or ctx.cfg.batch_size

        class Projection(TrainerCallback):
            # transformers 5 calls this after gradient clipping and before optimizer.step(), with the accumulated
            # gradient in p.grad, which DDP has already averaged over the processes. Projection never lengthens g,
            # so the clipped norm still bounds the update.
            def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
                ctx.step = state.global_step  # the step being taken: the same replay rows on resume
                params = [p for p in model.parameters() if p.requires_grad]
                with torch.enable_grad():  # each process its share of one replay draw of world x size rows
                    ref_loss = ctx.replay_ce(model, ctx.replay_batch(size=size))
                    refs = torch.autograd.grad(ref_loss, params, allow_unused=True)  # leaves p.grad alone
                # The reference gradient of the whole draw, the same on every process (as g is after DDP's
                # all-reduce), so every process projects alike and applies the same update.
                refs = [torch.zeros_like(p) if r is None else r for p, r in zip(params, refs)]
                refs = [r / ctx.world for r in dist.all_sum(refs)]
                pairs = [(p, r) for p, r in zip(params, refs) if p.grad is not None]
                projected = project([p.grad for p, _ in pairs], [r for _, r in pairs])
                ctx.log("agem_projected", projected)  # averaged per log line: the share of projected steps
                ctx.log("agem_safety_loss", ref_loss.detach())

        return Projection()
