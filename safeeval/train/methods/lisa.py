"""Lisa (Huang et al. 2024, "Lazy Safety Alignment"): alternate safety and user steps under a proximal pull."""

from .base import Method, check_range


class Lisa(Method):
    name = "lisa"
    help = (
        "Lisa: align_steps optimizer steps on safety data, then user_steps on the user's data, in turn, plus "
        "rho/2 * ||theta - theta_anchor||^2 to the weights the previous state ended with."
    )
    options = {"align_steps": 1, "user_steps": 4, "rho": 1.0}
    uses_safety = True

    def __init__(self, **given):
        super().__init__(**given)
        self._phase = None  # the phase of the last step seen
        self._anchor = None

    def check(self):
        check_range(self.name, "align_steps", self.opt.align_steps, 1)
        check_range(self.name, "user_steps", self.opt.user_steps, 1)
        check_range(self.name, "rho", self.opt.rho, 0.0)

    def phase(self, step: int) -> str:
        """From the global step alone, so a resumed run is in the phase the uninterrupted one would be."""
        return "align" if step % (self.opt.align_steps + self.opt.user_steps) < self.opt.align_steps else "user"

    def state(self):  # the anchor a resumed run must keep pulling toward (not the weights it resumes with)
        return {"phase": self._phase, "anchor": self._anchor}

    def restore(self, state):
        self._phase, self._anchor = state["phase"], state["anchor"]

    def batch(self, ctx, model, inputs):
        phase = self.phase(ctx.step)
        if phase != self._phase:  # a switch: anchor on the weights the last phase ended with
            self._anchor = [p.detach().clone() for p in model.parameters() if p.requires_grad]
            self._phase = phase
        ctx.log("lisa_align", phase == "align")  # per log line: the share of alignment steps
        if phase == "align":  # the user's batch is skipped (mix.jsonl shows it untrained): the fixed budget of
            return ctx.replay_batch(size=len(inputs["input_ids"]))  # steps is shared by both phases
        return inputs

    def loss(self, ctx, model, inputs, outputs):
        if self.opt.rho == 0:
            return None
        params = [p for p in model.parameters() if p.requires_grad]
        drift = sum(((p.float() - a.float()) ** 2).sum() for p, a in zip(params, self._anchor))
        ctx.log("lisa_drift", drift.detach())
        return self.opt.rho / 2 * drift
