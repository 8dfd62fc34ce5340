"""DER++ (Buzzega et al. 2020): Dark Experience Replay plus cross-entropy on a second replay batch of safety data."""

from .base import check_range
from .der import DER


class DERpp(DER):
    name = "derpp"
    help = (
        "DER++: DER's alpha * logit distance on one safety replay batch plus beta * cross-entropy on "
        "another, independently drawn."
    )
    options = {**DER.options, "beta": 0.5}

    def check(self):
        super().check()
        check_range(self.name, "beta", self.opt.beta, 0.0)

    def loss(self, ctx, model, inputs, outputs):
        total = super().loss(ctx, model, inputs, outputs)
        if self.opt.beta == 0:
            return total
        ce = ctx.replay_ce(model, self.replay(ctx, 1))  # draw 1: independent of DER's draw 0
        ctx.log("derpp_replay_ce", ce.detach())
        ce = self.opt.beta * ce
        return ce if total is None else total + ce
