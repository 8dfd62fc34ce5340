"""Linear merge / weight interpolation (Wortsman et al. 2022, WiSE-FT): (1 - lam) * aligned + lam * fine-tuned."""

from ._merge import MergeMethod


class Linear(MergeMethod):
    name = "linear"
    help = "Interpolate between the aligned and the fine-tuned weights: (1 - lam) * aligned + lam * fine-tuned."
    lam_max = 1.0
