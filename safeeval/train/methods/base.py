"""The few hooks every continual-learning method may fill; the trainer calls them and nothing else."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

from ...errors import SafeevalError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..trainer import Context


class Method:
    """A method is its name, its options with defaults, and whichever hooks it needs:

    - `safety_ratio`: share of the fixed budget filled with safety rows (replay by mixing).
    - `safety_rows(ctx)`: where those rows come from (default: the configured safety set).
    - `setup(ctx, model)`: before the first step (snapshots, a Fisher estimate).
    - `batch(ctx, model, inputs)`: the batch to train on this step (default: the user's).
    - `loss(ctx, model, inputs, outputs)`: a term added to the completion-only cross-entropy.
    - `callback(ctx)`: a transformers TrainerCallback, for work around the optimizer step (gradient projection).
    - `finish(ctx, model)`: after the last step; returns the model to save (merges, projections). A
      `post_hoc` method trains nothing: `finish` receives the fine-tuned model of the matching `sft` run.
    - `state()` / `restore(state)`: what a resumed run needs that the weights, the optimizer and the step number do
      not give back (saved in every checkpoint; `restore` runs before `setup` on a resume).

    Under several processes (DDP) every process calls every hook except `finish`, which runs on the main process
    only; `ctx.world` and `ctx.rank` say where a hook runs.
    """

    name = ""
    options: dict = {}  # option -> default; the type of the default is the option's type
    uses_safety = False  # reads the safety set (replay batches, Fisher, alignment steps)
    hidden_states = False  # needs the main forward pass's hidden states
    full_logits = False  # reads the main forward's logits at every position (otherwise: at the learned ones only)
    post_hoc = False  # edits the weights of a finished `sft` run with the same settings (merges)
    parameter_sharding = False  # works when FSDP / ZeRO-3 shard the weights across processes (data mixing only)
    help = ""

    def __init__(self, **given):
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            valid = ", ".join(f"{k} (default {v})" for k, v in self.options.items()) or "none"
            raise SafeevalError(f"Method '{self.name}' does not take option(s) {unknown}. Its options: {valid}.")
        values = {}
        for key, default in self.options.items():
            value = given.get(key, default)
            values[key] = _typed(self.name, key, value, default)
        self.opt = SimpleNamespace(**values)
        self.check()

    def check(self) -> None:
        """Validate option values (ranges); raise SafeevalError with a sentence."""

    @property
    def safety_ratio(self) -> float:
        return 0.0

    def safety_rows(self, ctx: Context):
        return ctx.load_safety()

    def setup(self, ctx: Context, model) -> None:
        pass

    def batch(self, ctx: Context, model, inputs: dict) -> dict:
        return inputs

    def loss(self, ctx: Context, model, inputs: dict, outputs) -> torch.Tensor | None:
        return None

    def callback(self, ctx: Context):
        return None

    def finish(self, ctx: Context, model):
        return model

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def describe(self) -> dict:
        return {"name": self.name, "options": vars(self.opt)}


def _typed(method: str, key: str, value, default):
    if default is None or value is None:
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise SafeevalError(
            f"Method '{method}': option {key} must be a {type(default).__name__}; got {value!r}."
        ) from None


def check_range(method: str, key: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise SafeevalError(f"Method '{method}': option {key} must lie in {bound}; got {value}.")
