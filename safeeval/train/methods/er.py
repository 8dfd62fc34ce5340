"""Experience replay: safety demonstrations mixed into the user's data (also the SafeInstr baseline)."""

from .base import Method, check_range


class ER(Method):
    name = "er"
    help = "Replay: a share `ratio` of the fixed budget is safety data (SafeInstr when that data is refusals)."
    options = {"ratio": 0.1}
    uses_safety = True
    parameter_sharding = True  # data mixing only

    def check(self):
        check_range(self.name, "ratio", self.opt.ratio, 0.0, 1.0)

    @property
    def safety_ratio(self) -> float:
        return self.opt.ratio
