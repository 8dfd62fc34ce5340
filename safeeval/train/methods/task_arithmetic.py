"""Task arithmetic (Ilharco et al. 2023): aligned weights plus lam times the task vector tau = fine-tuned - aligned.

With a single task vector taken relative to the aligned model this is the linear merge's formula; it differs
only in letting lam go beyond 1 (extrapolation along tau).
"""

from ._merge import MergeMethod


class TaskArithmetic(MergeMethod):
    name = "task-arithmetic"
    help = "Aligned weights + lam * (fine-tuned - aligned); lam may exceed 1."
