"""One training run on transformers' Trainer: the method's hooks around a completion-only SFT loss.

Multi-GPU and multi-node runs come from `accelerate launch -m safeeval train ...` (FSDP or DeepSpeed through
accelerate's config); nothing here is distributed code of its own.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import random
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import data as task_data
from .. import results
from ..errors import SafeevalError
from ..files import write_json, write_jsonl
from ..keys import key
from ..models import ModelRef, folder_fingerprint, load_tokenizer, resolve_model
from .config import TrainConfig, task_label
from .data import TrainSet, build_mix, encode, load_set
from .lora import lora_layers
from .methods import Method, make_method

SCHEMA_VERSION = 1


@dataclass
class Context:
    """What a method may use: the run's settings, the tokenizer, the aligned model and batches of safety data."""

    cfg: TrainConfig
    method: Method
    tokenizer: object
    base: ModelRef
    out: Path
    notify: Callable[[str], None] = print
    model: object = None  # the model being trained (a PeftModel with LoRA)
    step: int = 0  # the optimizer step being computed
    micro: int = 0  # the micro-batch within that step (gradient accumulation)
    metrics: dict = field(default_factory=dict)  # name -> values since the last log line
    step_times: list = field(default_factory=list)  # wall-clock seconds of each optimizer step
    _safety: TrainSet | None = None
    _replay: list[dict] | None = None
    _frozen: object = None
    _initial: dict | None = None

    # -- data --
    def load_safety(self) -> TrainSet:
        if self._safety is None:
            self._safety = load_set(self.cfg.safety, "safety", task_data.data_dir(self.cfg.data_dir), self.cfg.tasks_dirs)
            if self._safety.unusable:
                self.notify(f"{self._safety.unusable} rows of {self._safety.name} hold no answer and are left out.")
            if self._safety.license and "NC" in self._safety.license:
                self.notify(f"Safety data '{self._safety.name}' is licensed {self._safety.license}.")
        return self._safety

    def replay_batch(self, draw: int = 0, size: int | None = None) -> dict:
        """A batch of safety rows for this step: the same (seed, step, draw) gives the same rows, so a resumed
        run replays what the uninterrupted one would have."""
        if self._replay is None:
            rows = [encode(self.tokenizer, ex.messages, self.cfg.max_length) for ex in self.load_safety().examples]
            self._replay = [r for r in rows if r is not None]
            if not self._replay:
                raise SafeevalError(f"No safety row fits in max_length {self.cfg.max_length}.")
        rng = random.Random(f"{self.cfg.seed}|{self.step}|{self.micro}|{draw}")
        size = min(size or self.cfg.batch_size, len(self._replay))
        batch = collate(self.tokenizer, rng.sample(self._replay, size))
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in batch.items()}

    # -- the aligned model --
    @contextlib.contextmanager
    def aligned(self, model):
        """The aligned model, without gradients: with LoRA the same network with its adapter switched off
        (no second copy in memory); with full fine-tuning a frozen copy made at the start."""
        import torch

        model = getattr(model, "module", model)  # under DDP the wrapper has no disable_adapter()
        with torch.no_grad():
            if self.cfg.lora:
                with model.disable_adapter():
                    yield model
            else:
                if self._frozen is None:
                    raise SafeevalError("The frozen aligned copy was not made; call ctx.keep_aligned_copy() in setup.")
                yield self._frozen

    def keep_aligned_copy(self, model) -> None:
        """Full fine-tuning only: a frozen copy of the aligned weights for methods that query the aligned model."""
        if not self.cfg.lora and self._frozen is None:
            self._frozen = copy.deepcopy(model).eval().requires_grad_(False)

    def deltas(self, model) -> dict:
        """The weight update so far, per weight, differentiable: scale * B @ A for each LoRA layer (keyed by the
        base weight's name), or theta - theta_aligned for full fine-tuning."""
        if self.cfg.lora:
            return {name: delta for name, _, delta in lora_layers(model)}
        if self._initial is None:
            raise SafeevalError("Initial weights were not kept; call ctx.keep_initial(model) in setup.")
        return {n: p - self._initial[n] for n, p in model.named_parameters() if n in self._initial}

    def keep_initial(self, model) -> None:
        if not self.cfg.lora and self._initial is None:
            self._initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def log(self, name: str, value) -> None:
        self.metrics.setdefault(name, []).append(float(value))


def collate(tokenizer, rows: list[dict]) -> dict:
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):  # right padding: training sees no left pad
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def default_out(cfg: TrainConfig) -> Path:
    return Path("safeeval-train") / f"{task_label(cfg.task)}-{cfg.scenario}-{cfg.method}-s{cfg.seed}-{cfg.hash[:8]}"


def train(cfg: TrainConfig, notify: Callable[[str], None] = print, command: list[str] | None = None) -> dict:
    """Train (or resume, or find finished) one run; returns the contents of its training.json."""
    started = datetime.now(timezone.utc)
    cfg.check()
    method = make_method(cfg.method, cfg.method_options)  # bad options stop here, before any loading
    out = Path(cfg.out or default_out(cfg))
    done = _finished(out, cfg)
    if done is not None:
        notify(f"{out} already holds this finished run; nothing to train.")
        return done
    if method.post_hoc:
        return _post_hoc(cfg, method, out, notify, command, started)
    base = resolve_model(cfg.base)
    tokenizer = load_tokenizer(base.path, cfg.chat_template)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    root = task_data.data_dir(cfg.data_dir)
    task = load_set(cfg.task, "task", root, cfg.tasks_dirs)
    if task.unusable:
        notify(f"{task.unusable} rows of {task.name} hold no answer and are left out.")
    poison = load_set(cfg.poison, "poison", root, cfg.tasks_dirs) if cfg.scenario == "poisoned" else None
    ctx = Context(cfg, method, tokenizer, base, out, notify)
    if method.uses_safety and method.safety_rows.__func__ is Method.safety_rows:
        ctx.load_safety()  # a broken safety file fails now, not after the model is loaded
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, cfg)

    setup_started = time.perf_counter()
    safety = method.safety_rows(ctx) if method.safety_ratio > 0 else None  # before loading: GR-SAP generates here
    if safety is not None:
        ctx._safety = safety
    model = _load_model(cfg, base)
    ctx.model = model
    total = cfg.examples or (cfg.steps * cfg.batch_size * cfg.grad_accum if cfg.steps else None)
    mix = build_mix(task, total, poison=poison, poison_ratio=cfg.poison_ratio if poison else 0.0,
                    safety=safety, safety_ratio=method.safety_ratio, seed=cfg.seed)
    encoded, too_long = [], 0
    for ex in mix.examples:
        row = encode(tokenizer, ex.messages, cfg.max_length)
        if row is None:
            too_long += 1
        else:
            encoded.append(row)
    if not encoded:
        raise SafeevalError(f"Every training row's prompt is longer than max_length {cfg.max_length}.")
    if too_long:
        notify(f"{too_long} of {len(mix.examples)} rows left out: their prompt alone fills max_length {cfg.max_length}.")
    write_jsonl(out / "mix.jsonl", [{"id": ex.id, "role": ex.role} for ex in mix.examples])
    method.setup(ctx, model)
    setup_seconds = time.perf_counter() - setup_started

    trainer = _trainer(cfg, ctx, model, encoded)
    last = _last_checkpoint(out / "checkpoints", notify)
    if last:
        notify(f"Resuming from {last}.")
    train_started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    train_seconds = time.perf_counter() - train_started

    finish_started = time.perf_counter()
    final = method.finish(ctx, trainer.model)
    finish_seconds = time.perf_counter() - finish_started
    if not trainer.is_world_process_zero():
        return {}
    adapter_dir, model_dir = _save(final, tokenizer, out, cfg.save_merged)
    saved = adapter_dir or model_dir
    record = {
        "schema_version": SCHEMA_VERSION,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "command": command or [],
        "config": {**cfg.identity(), "out": str(out)},
        "config_hash": cfg.hash,
        "method": method.describe(),
        "scenario": cfg.scenario,
        "seed": cfg.seed,
        "base_model": {"name": cfg.base, "path": str(base.path), "fingerprint": folder_fingerprint(base.path)},
        "data": {
            "task": _set_info(task), "poison": _set_info(poison), "safety": _set_info(ctx._safety),
            "mix": {**mix.counts, "left_out_too_long": too_long,
                    "ids_hash": key([ex.id for ex in mix.examples])[:16]},
        },
        "output": {"adapter": str(adapter_dir) if adapter_dir else None, "model": str(model_dir) if model_dir else None,
                   "fingerprint": folder_fingerprint(saved)},
        "trainer": {"steps": trainer.state.global_step, "resumed_from": last, "world_size": trainer.args.world_size,
                    "setup_seconds": round(setup_seconds, 2),
                    "train_seconds": round(train_seconds, 2), "finish_seconds": round(finish_seconds, 2),
                    "seconds_per_step": _median_step(ctx.step_times),
                    "peak_rss_mib": round(_peak_rss_mib(), 1), "log_history": trainer.state.log_history},
        "versions": results.versions(),
    }
    write_json(out / "training.json", record)  # written last: its presence means the run is complete
    return record


def _post_hoc(cfg: TrainConfig, method: Method, out: Path, notify, command, started) -> dict:
    """A post-hoc method (a merge) edits the weights of a plain `sft` run with the same settings, which is
    trained once, in its own folder beside `out`, and shared by every merge of the same settings."""
    import torch
    from transformers import AutoModelForCausalLM

    sft_cfg = shared_sft(cfg)
    sft_cfg.out = _sibling_run(out.parent, sft_cfg.hash) or out.parent / default_out(sft_cfg).name
    finetuned = train(sft_cfg, notify, command)
    if not finetuned:  # not the main process of a distributed run
        return {}
    base = resolve_model(cfg.base)
    tokenizer = load_tokenizer(base.path, cfg.chat_template)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, cfg)
    dtype = getattr(torch, cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if cfg.lora else "float32"))
    ctx = Context(cfg, method, tokenizer, base, out, notify)
    finish_started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype)
    if cfg.lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, finetuned["output"]["adapter"])
    else:
        ctx._initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        model = AutoModelForCausalLM.from_pretrained(finetuned["output"]["model"], dtype=dtype)
    ctx.model = model
    final = method.finish(ctx, model)
    adapter_dir, model_dir = _save(final, tokenizer, out, cfg.save_merged)
    record = {**finetuned, "started_at": started.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
              "command": command or [], "config": {**cfg.identity(), "out": str(out)}, "config_hash": cfg.hash,
              "method": method.describe(), "finetuned_run": str(sft_cfg.out),
              "output": {"adapter": str(adapter_dir) if adapter_dir else None,
                         "model": str(model_dir) if model_dir else None,
                         "fingerprint": folder_fingerprint(adapter_dir or model_dir)},
              "trainer": {**finetuned["trainer"], "finish_seconds": round(time.perf_counter() - finish_started, 2)}}
    write_json(out / "training.json", record)
    return record


def shared_sft(cfg: TrainConfig) -> TrainConfig:
    """The plain sft run a post-hoc method edits: the same settings with method sft (no folder of its own yet)."""
    return dataclasses.replace(cfg, method="sft", method_options={}, out=None, save_merged=False)


def _sibling_run(folder: Path, config_hash: str) -> Path | None:
    """A finished run with these settings beside `out` (e.g. a sweep's own sft cell), to reuse, not retrain."""
    for path in sorted(folder.glob("*/training.json")) if folder.is_dir() else []:
        try:
            if json.loads(path.read_text()).get("config_hash") == config_hash:
                return path.parent
        except (OSError, ValueError):
            continue
    return None


def training_block(record: dict) -> dict:
    """What a scored result carries about the training that made its model (leaderboards group by it)."""
    return {"method": record["method"]["name"], "options": record["method"]["options"], "scenario": record["scenario"],
            "seed": record["seed"], "task": record["config"]["task"],
            "poison_ratio": record["config"]["poison_ratio"] if record["scenario"] == "poisoned" else 0.0,
            "config": record["config"], "config_hash": record["config_hash"], "base_model": record["base_model"],
            "output": record["output"], "data": record["data"]}


def _finished(out: Path, cfg: TrainConfig) -> dict | None:
    path = out / "training.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("config_hash") != cfg.hash:
        raise SafeevalError(f"{out} holds a finished run with other settings (config {record.get('config_hash')}, "
                            f"yours {cfg.hash}); choose another --out.")
    return record


def _claim(out: Path, cfg: TrainConfig) -> None:
    """A folder belongs to one configuration, so a resume never continues someone else's checkpoints."""
    path = out / "config.json"
    if path.exists():
        held = json.loads(path.read_text()).get("config_hash")
        if held != cfg.hash:
            raise SafeevalError(f"{out} holds an unfinished run with other settings (config {held}, yours {cfg.hash}); "
                                "choose another --out, or delete the folder to start over.")
        return
    write_json(path, {"config_hash": cfg.hash, "config": cfg.identity()})


def _load_model(cfg: TrainConfig, base: ModelRef):
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(cfg.seed)  # LoRA's initial A matrices come from torch's generator
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if cfg.lora else "float32")
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=getattr(torch, dtype))
    if not cfg.lora:
        return model
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else [t.strip() for t in cfg.lora_targets.split(",")]
    peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                             target_modules=targets, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, peft_config)
    except ValueError as exc:
        raise SafeevalError(f"LoRA could not be applied: {str(exc).splitlines()[0]}") from None


def _trainer(cfg: TrainConfig, ctx: Context, model, encoded: list[dict]):
    import os

    import torch
    from transformers import Trainer, TrainingArguments

    class MethodTrainer(Trainer):
        """transformers' Trainer with the method's batch, loss and callback hooks."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # our loss is a batch mean; the Trainer scales for accumulation
            self._seen_step = -1

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            step = self.state.global_step
            ctx.micro = ctx.micro + 1 if step == self._seen_step else 0  # every step starts at micro-batch 0
            ctx.step = self._seen_step = step
            inputs = ctx.method.batch(ctx, model, inputs)
            outputs = model(**inputs, output_hidden_states=ctx.method.hidden_states, use_cache=False)
            loss = outputs.loss
            extra = ctx.method.loss(ctx, model, inputs, outputs)
            if extra is not None:
                ctx.log("ce_loss", loss.detach())
                ctx.log("method_loss", extra.detach())
                loss = loss + extra
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            for name, values in ctx.metrics.items():
                if values:
                    logs[name] = round(sum(values) / len(values), 6)
            ctx.metrics.clear()
            super().log(logs, *args, **kwargs)

    args = TrainingArguments(
        output_dir=str(ctx.out / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay,
        max_steps=cfg.steps or -1,
        num_train_epochs=cfg.epochs,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=max(1, min(10, cfg.save_steps)),
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=not sys.stderr.isatty(),
        # The processes of a multi-process launch form one group (gloo) on a machine without CUDA only when told
        # to use the CPU; otherwise each would train alone.
        use_cpu=int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available(),
    )
    callbacks = [cb for cb in [ctx.method.callback(ctx), _step_timer(ctx)] if cb is not None]
    return MethodTrainer(model=model, args=args, train_dataset=encoded,
                         data_collator=lambda rows: collate(ctx.tokenizer, rows), callbacks=callbacks)


def _step_timer(ctx: Context):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            ctx.step_times.append(time.perf_counter() - self.started)

    return StepTimer()


def _median_step(times: list[float]) -> float | None:
    """The median step after the first (the first pays for lazy initialisation)."""
    rest = sorted(times[1:] or times)
    return round(rest[len(rest) // 2], 3) if rest else None


def _save(model, tokenizer, out: Path, merged: bool) -> tuple[Path | None, Path | None]:
    from peft import PeftModel

    if isinstance(model, PeftModel):
        folder = out / "adapter"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if not merged:
            return folder, None
        full = out / "model"
        model.merge_and_unload().save_pretrained(full)
        tokenizer.save_pretrained(full)
        return folder, full
    folder = out / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return None, folder


def _set_info(s: TrainSet | None) -> dict | None:
    if s is None:
        return None
    return {"name": s.name, "source": s.source, "license": s.license, "rows": len(s.examples), "unusable": s.unusable}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _last_checkpoint(folder: Path, notify: Callable[[str], None]) -> str | None:
    """The newest complete checkpoint. The Trainer writes trainer_state.json last, so a checkpoint without a
    readable one was cut off mid-write (a kill at that moment): it is removed and the one before it used."""
    found = sorted((int(p.name.split("-")[-1]), p) for p in folder.glob("checkpoint-*")
                   if p.is_dir() and p.name.split("-")[-1].isdigit()) if folder.is_dir() else []
    for _, path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            notify(f"{path.name} was cut off while being written; removing it.")
            shutil.rmtree(path)
    return None


