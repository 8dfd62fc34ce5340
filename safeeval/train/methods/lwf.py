"""Learning without Forgetting (Li & Hoiem 2016), as adapted to safety in "Unforgotten Safety" (Alssum et al. 2025)."""

from ...errors import SafeevalError
from .base import Method, check_range

TARGETS = ("hidden", "logits")


class LwF(Method):
    name = "lwf"
    help = (
        "Learning without Forgetting: beta * distance to the aligned model on the user's own batch: MSE of "
        "the last hidden states (default), or KL of the output distributions at a temperature."
    )
    options = {"beta": 1.0, "target": "hidden", "temperature": 2.0}

    def check(self):
        check_range(self.name, "beta", self.opt.beta, 0.0)
        if self.opt.target not in TARGETS:
            raise SafeevalError(
                f"Method '{self.name}': option target must be one of {', '.join(TARGETS)}; got {self.opt.target!r}."
            )
        if self.opt.temperature <= 0:
            raise SafeevalError(
                f"Method '{self.name}': option temperature must be positive; got {self.opt.temperature}."
            )

    @property
    def hidden_states(self) -> bool:  # the main forward returns them only when they are matched
        return self.opt.target == "hidden"

    @property
    def full_logits(self) -> bool:  # the KL target reads the logits of every real token
        return self.opt.target == "logits"

    def setup(self, ctx, model):
        ctx.keep_aligned_copy(model)

    def loss(self, ctx, model, inputs, outputs):
        import torch.nn.functional as F

        if self.opt.beta == 0:
            return None
        keep = inputs["attention_mask"].bool()  # every real token, prompt included: no padding
        args = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
        if self.opt.target == "hidden":
            with ctx.aligned(model) as aligned:  # logits_to_keep=1: the aligned logits are not needed here
                target = aligned(**args, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][keep]
            current = outputs.hidden_states[-1][keep].float()
            distance = ctx.global_mean((current - target.float()).pow(2).sum(), current.numel())
        else:
            t = self.opt.temperature
            with ctx.aligned(model) as aligned:
                target = aligned(**args).logits[keep]
            # KL(aligned || current) of the softened distributions; equal to Li & Hoiem's cross-entropy up to a
            # constant, so the same gradient
            kl = F.kl_div(
                F.log_softmax(outputs.logits[keep].float() / t, -1),
                F.log_softmax(target.float() / t, -1),
                log_target=True,
                reduction="sum",
            )
            distance = ctx.global_mean(kl, int(keep.sum()))
        ctx.log("lwf_distance", distance.detach())
        return self.opt.beta * distance
