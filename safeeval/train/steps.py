"""transformers' Trainer with the method's hooks, a loss normalised over the global batch, and a checkpoint that
carries the method's state.

The loss of a step is the cross-entropy summed over the completion tokens of every micro-batch on every process,
divided by their number. Each process backpropagates its share times the world size, because DDP averages the
processes' gradients; a mean of per-process means would weigh a short completion on one process like a long one
on another. A method's extra term is a mean over micro-batches and processes.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import checkpoint, dist


def completion_ce(model, batch: dict, hidden_states: bool = False, full_logits: bool = False):
    """(outputs, sum of the cross-entropy over the completion tokens, their number); logits at t predict t + 1.

    Most positions of a batch are prompt or padding (an SST-2 row learns ~2 of its ~70 tokens), and their logits
    (batch x positions x vocabulary, float32 for the loss) were computed only to be ignored: measured as 10% of what
    a GSM8K step saved for backward (benchmarks/README.md). So the model makes logits only at the positions some
    row of the batch learns (its own forward, so an architecture's logit scaling still applies), unless a method
    reads them all (full_logits: LwF on logits)."""
    import torch.nn.functional as F

    targets = batch["labels"][:, 1:]
    keep = {} if full_logits else {"logits_to_keep": (targets != -100).any(0).nonzero().squeeze(1)}
    outputs = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=hidden_states,
        use_cache=False,
        **keep,
    )
    logits = outputs.logits[:, :-1] if full_logits else outputs.logits
    wanted = targets if full_logits else targets[:, keep["logits_to_keep"]]
    total = F.cross_entropy(logits.flatten(0, 1).float(), wanted.flatten(), ignore_index=-100, reduction="sum")
    return outputs, total, (targets != -100).sum()


def unwrap(model):
    """The model itself under a DDP wrapper: methods run extra forward passes on it, outside DDP's bookkeeping
    (one DDP forward per backward), and name its weights without the wrapper's prefix."""
    return getattr(model, "module", model)


def make_trainer(args, ctx, model, encoded: list[dict], collate):
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class MethodTrainer(MethodHooks, Trainer):
        """transformers' Trainer with the method's hooks (defined here: transformers is imported only to train)."""

    trainer = MethodTrainer(
        ctx=ctx,
        model=model,
        args=args,
        train_dataset=encoded,
        data_collator=collate,
        callbacks=[cb for cb in [ctx.method.callback(ctx), _step_timer(ctx)] if cb is not None],
    )
    # Progress is ours (ctx.advance, a Reporter's stage; the loss through ctx.notify), on a terminal and in a log
    # alike: the Trainer's own bar and its raw log dicts would say the same, less readably.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_progress(ctx))
    return trainer


class MethodHooks:
    """The overrides of transformers' Trainer that run the method's hooks; make_trainer puts this class in front
    of Trainer. `ctx` is the run's Context (train/trainer.py)."""

    def __init__(self, *a, ctx, **kw):
        self.ctx = ctx
        super().__init__(*a, **kw)
        # compute_loss normalises over the global batch itself: the Trainer must neither divide by the number
        # of micro-batches (loss_is_scaled_for_ga, or model_accepts_loss_kwargs in older transformers) nor
        # count tokens of its own (get_batch_samples below does, after the method chose its batches)
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self._seen_step = -1

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The step's micro-batches as the method chooses them (Lisa swaps in safety rows), the rows noted,
        and the number of completion tokens they hold on all processes together."""
        ctx = self.ctx
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        inner = unwrap(self.model)
        for micro, batch in enumerate(batches):
            ctx.step, ctx.micro = self.state.global_step, micro
            rows = batch.pop("row")
            chosen = ctx.method.batch(ctx, inner, batch)
            if chosen is batch:  # a replacement notes its own rows (Context.replay_batch)
                ctx.rows.note(ctx.step, rows.tolist())
            batches[micro] = chosen
        if not batches:
            return batches, None
        count = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        return batches, dist.all_sum([_tensor(count, device)])[0]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ctx = self.ctx
        step = self.state.global_step
        ctx.micro = ctx.micro + 1 if step == self._seen_step else 0  # every step starts at micro-batch 0
        ctx.step = self._seen_step = step
        outputs, total, count = completion_ce(model, inputs, ctx.method.hidden_states, ctx.method.full_logits)
        outputs.loss = (total / count.clamp(min=1)).detach()  # this micro-batch's own mean, for the hooks
        if num_items_in_batch is None:  # outside the training loop
            num_items_in_batch = count
        loss = total * ctx.world / num_items_in_batch
        extra = ctx.method.loss(ctx, unwrap(model), inputs, outputs)
        if extra is not None:
            micro_batches = self.current_gradient_accumulation_steps
            ctx.log("ce_loss", loss.detach() * micro_batches)  # averaged per log line: the step's CE
            ctx.log("method_loss", extra.detach())
            loss = loss + extra / micro_batches
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *a, **kw):
        """The method's metrics, averaged over the values since the last line and over the processes."""
        mine = {name: sum(v) / len(v) for name, v in self.ctx.metrics.items() if v}
        self.ctx.metrics.clear()
        everyone = dist.gather(mine)
        for name in sorted(set().union(*everyone)):
            values = [m[name] for m in everyone if name in m]
            logs[name] = round(sum(values) / len(values), 6)
        super().log(logs, *a, **kw)

    def _save_checkpoint(self, model, trial):
        # Ours first: the Trainer writes trainer_state.json last, and its presence marks a complete checkpoint.
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        checkpoint.save(folder, self.ctx.method, self.ctx.rows)
        super()._save_checkpoint(model, trial)

    def _save_rng_state(self, output_dir):
        # Each process writes its own rng_state_<rank>.pth, and the Trainer's main process then writes
        # trainer_state.json without waiting: a process killed in between left a "complete" checkpoint with a cut-off
        # RNG file, and resuming died on it. The barrier keeps the marker honest.
        super()._save_rng_state(output_dir)
        dist.barrier()


def _tensor(value, device):
    import torch

    return torch.tensor(float(value), device=device)


def _progress(ctx):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            ctx.advance(state.global_step)  # a resumed run starts where its checkpoint left off

        def on_step_end(self, args, state, control, **kwargs):
            ctx.advance(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                extra = "".join(f", {k} {v:.4g}" for k, v in logs.items() if k in ("ce_loss", "method_loss"))
                ctx.notify(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4g}{extra}")

    return Progress()


def _step_timer(ctx):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            ctx.step_times.append(time.perf_counter() - self.started)

    return StepTimer()
