"""Dark Experience Replay (Buzzega et al. 2020), adapted to safety as in "Unforgotten Safety" (Alssum et al. 2025)."""

from ...errors import SafeevalError
from .base import Method, check_range

LOSSES = ("mse", "kl")


class DER(Method):
    name = "der"
    help = (
        "Dark Experience Replay: alpha * distance (mse or kl) between the model's and the aligned model's "
        "logits on a replay batch of safety completions."
    )
    # replay_batch 0 = a quarter of batch_size (at least 1): the extra forwards keep a step within ~1.5x sft's cost
    options = {"alpha": 0.5, "loss": "mse", "replay_batch": 0}
    uses_safety = True

    def check(self):
        check_range(self.name, "alpha", self.opt.alpha, 0.0)
        check_range(self.name, "replay_batch", self.opt.replay_batch, 0)
        if self.opt.loss not in LOSSES:
            raise SafeevalError(
                f"Method '{self.name}': option loss must be one of {', '.join(LOSSES)}; got {self.opt.loss!r}."
            )

    def setup(self, ctx, model):
        ctx.keep_aligned_copy(model)  # no-op with LoRA: the aligned model is the adapter switched off

    def replay(self, ctx, draw: int) -> dict:
        return ctx.replay_batch(draw=draw, size=self.opt.replay_batch or max(1, ctx.cfg.batch_size // 4))

    def loss(self, ctx, model, inputs, outputs):
        if self.opt.alpha == 0:
            return None
        distance = self.distance(ctx, model, self.replay(ctx, 0))
        ctx.log("der_distance", distance.detach())
        return self.opt.alpha * distance

    def distance(self, ctx, model, batch: dict):
        """Distance between current and aligned logits at the positions that predict completion tokens. The
        aligned logits are computed now rather than stored, so only this batch's logits ever exist. With several
        processes the mean runs over every process's positions (ctx.global_mean)."""
        import torch.nn.functional as F

        completion = batch["labels"] != -100
        start = max(int(completion.float().argmax(1).min()) - 1, 0)  # the first position predicting a completion token
        keep = completion[:, start + 1 :]  # logits at t predict token t + 1
        # logits only from `start` on (the prompts' are never compared), no cache, no hidden states
        args = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "use_cache": False,
            "logits_to_keep": completion.shape[1] - start,
        }
        with ctx.aligned(model) as aligned:
            target = aligned(**args).logits[:, :-1][keep].float()
        current = model(**args).logits[:, :-1][keep].float()
        if self.opt.loss == "mse":  # Buzzega et al.: MSE on the logits, mean over positions and vocabulary
            return ctx.global_mean((current - target).pow(2).sum(), current.numel())
        # KL(aligned || current) over the vocabulary, mean over positions
        kl = F.kl_div(F.log_softmax(current, -1), F.log_softmax(target, -1), log_target=True, reduction="sum")
        return ctx.global_mean(kl, current.shape[0])
