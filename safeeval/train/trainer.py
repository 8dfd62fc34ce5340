"""One training run on transformers' Trainer: the method's hooks around a completion-only SFT loss.

Several processes (`torchrun --nproc_per_node N -m safeeval train ...`, or `accelerate launch`) train as one run:
the Trainer's DDP shards each global batch across them, and the main process alone writes the run folder while
the others wait (dist.py says what else differs with several processes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import re
import resource
import shutil
import signal
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
from ..progress import Reporter, silent
from . import checkpoint, dist
from .checkpoint import RowLog
from .config import TrainConfig, task_label
from .data import TrainSet, build_mix, encode
from .lora import lora_layers
from .methods import Method, make_method
from .sets import load_set
from .steps import completion_ce, make_trainer

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
    rows: RowLog = field(default_factory=lambda: RowLog([]))  # the rows each step trained on
    training: bool = False  # inside the training loop: replay rows drawn now are noted in `rows`
    advance: Callable[[int], None] = lambda n: None  # moves the run's progress by n optimizer steps
    reporter: Reporter = silent  # draws the stages a method runs before training (GR-SAP's synthesis)
    _safety: TrainSet | None = None
    _replay: list[tuple[str, dict]] | None = None
    _frozen: object = None
    _initial: dict | None = None

    # -- processes --
    @property
    def world(self) -> int:
        return dist.world()

    @property
    def rank(self) -> int:
        return dist.rank()

    @property
    def is_main(self) -> bool:
        return dist.is_main()

    def global_mean(self, total, count):
        """total / count over the global batch, from this process's share of both. The counts are summed across
        processes and the result scaled by the world size, because DDP averages the processes' gradients: their
        average is then the mean over every process's items, not a mean of per-process means."""
        if self.world == 1:
            return total / count
        [n] = dist.all_sum([_scalar(count, total.device)])
        return total * self.world / n.to(total.device)

    def replay_ce(self, model, batch: dict):
        """The completion-only cross-entropy of a batch, as a mean over the global batch's completion tokens."""
        _, total, count = completion_ce(model, batch)
        return self.global_mean(total, count)

    # -- data --
    def load_safety(self) -> TrainSet:
        if self._safety is None:
            self._safety = load_set(
                self.cfg.safety, "safety", task_data.data_dir(self.cfg.data_dir), self.cfg.tasks_dirs
            )
            if self._safety.unusable:
                self.notify(f"{self._safety.unusable} rows of {self._safety.name} hold no answer and are left out.")
            if self._safety.license and "NC" in self._safety.license:
                self.notify(f"Safety data '{self._safety.name}' is licensed {self._safety.license}.")
        return self._safety

    def replay_batch(self, draw: int = 0, size: int | None = None) -> dict:
        """A batch of `size` safety rows for this process and step. The same (seed, step, micro-batch, draw) gives
        the same rows, so a resumed run replays what the uninterrupted one would have. With several processes the
        rows are one draw of world x size rows split between them, as the global batch is."""
        if self._replay is None:
            rows = [
                (ex.id, encode(self.tokenizer, ex.messages, self.cfg.max_length)) for ex in self.load_safety().examples
            ]
            self._replay = [(i, r) for i, r in rows if r is not None]
            if not self._replay:
                raise SafeevalError(f"No safety row fits in max_length {self.cfg.max_length}.")
        rng = random.Random(f"{self.cfg.seed}|{self.step}|{self.micro}|{draw}")
        size = size or self.cfg.batch_size
        total = size * self.world
        if total <= len(self._replay):
            drawn = rng.sample(self._replay, total)
        else:  # a pool smaller than the draw is cycled: every process gets `size` rows
            order = rng.sample(self._replay, len(self._replay))
            drawn = [order[i % len(order)] for i in range(total)]
        mine = drawn[self.rank * size : (self.rank + 1) * size]
        if self.training:
            self.rows.note(self.step, [row_id for row_id, _ in mine])
        batch = collate(self.tokenizer, [row for _, row in mine])
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
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    if "row" in rows[0]:  # the mix's rows carry their place in the mix, to note what each step trained on
        batch["row"] = torch.tensor([r["row"] for r in rows])
    return batch


def _scalar(value, device):
    import torch

    return torch.tensor(float(value), device=device)


def default_out(cfg: TrainConfig) -> Path:
    return Path("safeeval-train") / f"{task_label(cfg.task)}-{cfg.scenario}-{cfg.method}-s{cfg.seed}-{cfg.hash[:8]}"


def train(
    cfg: TrainConfig,
    notify: Callable[[str], None] = print,
    command: list[str] | None = None,
    reporter: Reporter = silent,
) -> dict:
    """Train (or resume, or find finished) one run; returns the contents of its training.json, or {} on every
    process but the main one of a multi-process run. reporter draws the steps' progress; notify gets the loss."""
    started = datetime.now(timezone.utc)
    cfg.check()
    method = make_method(cfg.method, cfg.method_options)  # bad options stop here, before any loading
    dist.check_launch()
    dist.check_sharding(method, cfg.save_merged)
    if not dist.is_main():
        notify, reporter = _silent, silent  # one process speaks for the run
    out = Path(cfg.out or default_out(cfg))
    done = _finished(out, cfg)
    if done is not None:
        notify(f"{out} already holds this finished run; nothing to train.")
        return done if dist.is_main() else {}
    if method.post_hoc:
        return _post_hoc(cfg, method, out, notify, command, started)
    args = _training_args(cfg, out)  # with several processes this makes the process group
    base = resolve_model(cfg.base)
    tokenizer = _tokenizer(base, cfg)
    task, poison = _train_sets(cfg, notify)
    ctx = Context(cfg, method, tokenizer, base, out, notify, reporter=reporter)
    if method.uses_safety and method.safety_rows.__func__ is Method.safety_rows:
        ctx.load_safety()  # a broken safety file fails now, not after the model is loaded
    last = dist.from_main(lambda: _open_folder(out, cfg, notify))  # the others wait while it claims the folder

    setup_started = time.perf_counter()
    model, mix, encoded, too_long = _set_up(ctx, task, poison, last, args.device)
    setup_seconds = time.perf_counter() - setup_started

    trainer = make_trainer(args, ctx, model, encoded, lambda rows: collate(tokenizer, rows))
    if last:
        notify(f"Resuming from {last}.")
    train_started = time.perf_counter()
    _fit(trainer, ctx, reporter, last, len(encoded))
    train_seconds = time.perf_counter() - train_started
    if dist.sharding():  # every process takes part in gathering the sharded weights; the main one writes them
        adapter_dir, model_dir = _save_sharded(trainer, tokenizer, out, cfg.lora)
    if not dist.is_main():
        dist.barrier()  # while the main process writes the run folder
        return {}

    finish_started = time.perf_counter()
    final = method.finish(ctx, trainer.model)
    finish_seconds = time.perf_counter() - finish_started
    if not dist.sharding():  # (a method that edits weights in finish is refused under sharding)
        adapter_dir, model_dir = _save(final, tokenizer, out, cfg.save_merged)
    seconds = {"setup": setup_seconds, "train": train_seconds, "finish": finish_seconds}
    saved = (adapter_dir, model_dir)
    record = _record(cfg, ctx, mix, too_long, task, poison, saved, trainer, last, started, command, seconds)
    write_jsonl(out / "mix.jsonl", ctx.rows.lines())
    write_json(out / "training.json", record)  # written last: its presence means the run is complete
    dist.barrier()
    return record


def _tokenizer(base: ModelRef, cfg: TrainConfig):
    """The base model's tokenizer, padding on the right (completion-only labels), with a pad token."""
    tokenizer = load_tokenizer(base.path, cfg.chat_template)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _train_sets(cfg: TrainConfig, notify) -> tuple[TrainSet, TrainSet | None]:
    """The user's task set and, in the poisoned scenario, the poison set."""
    root = task_data.data_dir(cfg.data_dir)
    task = load_set(cfg.task, "task", root, cfg.tasks_dirs, notify)  # notify: a generated set says it is answering
    if task.unusable:
        notify(f"{task.unusable} rows of {task.name} hold no answer and are left out.")
    poison = load_set(cfg.poison, "poison", root, cfg.tasks_dirs, notify) if cfg.scenario == "poisoned" else None
    return task, poison


def _set_up(ctx: Context, task: TrainSet, poison: TrainSet | None, last: str | None, device):
    """Everything before the first step: safety rows, the model, the mix and its tokens, a checkpoint's state and
    the method's own setup. Returns (model, mix, encoded rows, rows left out as too long)."""
    cfg, method = ctx.cfg, ctx.method
    if method.safety_ratio > 0:  # before loading: GR-SAP generates here, once, and hands its rows to the others
        ctx._safety = dist.from_main(lambda: method.safety_rows(ctx))
    model = _load_model(cfg, ctx.base)
    ctx.model = model
    mix = build_mix(
        task,
        _budget(cfg),
        poison=poison,
        poison_ratio=cfg.poison_ratio if poison else 0.0,
        safety=ctx._safety if method.safety_ratio > 0 else None,
        safety_ratio=method.safety_ratio,
        seed=cfg.seed,
    )
    encoded, too_long = _encode(ctx.tokenizer, mix.examples, cfg.max_length, ctx.notify)
    _same_everywhere(key([ex.id for ex in mix.examples]), "mix", "their data files or settings differ")
    ctx.rows = RowLog(mix.examples)
    _restore(ctx, last, device, ctx.notify)
    method.setup(ctx, model)
    return model, mix, encoded, too_long


def _fit(trainer, ctx: Context, reporter: Reporter, last: str | None, rows: int) -> None:
    """The Trainer's loop, stopping cleanly on a signal, with the steps' progress; then the rows trained on are
    collected and (unsharded) the weights checked equal on every process."""
    with _stops_cleanly(ctx.out), reporter(f"training ({ctx.cfg.method})", _total_steps(ctx.cfg, rows)) as advance:
        ctx.training, ctx.advance = True, advance
        trainer.train(resume_from_checkpoint=last)
        ctx.training = False
        ctx.rows.collect()
        if not dist.sharding():
            _same_everywhere(_weights_sum(trainer.model), "weights", "a method changed them on one process only")


def _record(
    cfg: TrainConfig,
    ctx: Context,
    mix,
    too_long: int,
    task: TrainSet,
    poison: TrainSet | None,
    saved: tuple,
    trainer,
    last: str | None,
    started: datetime,
    command: list[str] | None,
    seconds: dict,
) -> dict:
    """training.json's contents."""
    adapter_dir, model_dir = saved
    return {
        "schema_version": SCHEMA_VERSION,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "command": command or [],
        "config": {**cfg.identity(), "out": str(ctx.out)},
        "config_hash": cfg.hash,
        "method": ctx.method.describe(),
        "scenario": cfg.scenario,
        "seed": cfg.seed,
        "base_model": {"name": cfg.base, "path": str(ctx.base.path), "fingerprint": folder_fingerprint(ctx.base.path)},
        "data": {
            "task": _set_info(task),
            "poison": _set_info(poison),
            "safety": _set_info(ctx._safety),
            "mix": {**mix.counts, "left_out_too_long": too_long, "ids_hash": key([ex.id for ex in mix.examples])[:16]},
        },
        "output": {
            "adapter": str(adapter_dir) if adapter_dir else None,
            "model": str(model_dir) if model_dir else None,
            "fingerprint": folder_fingerprint(adapter_dir or model_dir),
        },
        "trainer": {
            "steps": trainer.state.global_step,
            "resumed_from": last,
            **_layout(cfg),
            "setup_seconds": round(seconds["setup"], 2),
            "train_seconds": round(seconds["train"], 2),
            "finish_seconds": round(seconds["finish"], 2),
            "seconds_per_step": _median_step(ctx.step_times),
            "peak_rss_mib": round(_peak_rss_mib(), 1),
            "log_history": trainer.state.log_history,
        },
        "versions": results.versions(),
    }


def _silent(text: str) -> None:
    pass


def _total_steps(cfg: TrainConfig, rows: int) -> int:
    """Optimizer steps of the run, as the progress bar counts them."""
    if cfg.steps:
        return cfg.steps
    per_step = cfg.batch_size * cfg.grad_accum * dist.world()
    return max(1, math.ceil(cfg.epochs * math.ceil(rows / per_step)))  # as the Trainer counts max_steps


def _budget(cfg: TrainConfig) -> int | None:
    """The mix's rows: --examples, else every step's global batch (so the same rows, and the same poison count,
    whatever the number of processes the global batch is split over), else the whole task set."""
    if cfg.examples:
        return cfg.examples
    return cfg.steps * cfg.batch_size * cfg.grad_accum * dist.world() if cfg.steps else None


def _layout(cfg: TrainConfig) -> dict:
    """How the global batch was made: per-device batch x processes x accumulation."""
    return {
        "world_size": dist.world(),
        "per_device_batch": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "global_batch": cfg.batch_size * dist.world() * cfg.grad_accum,
        "sharding": dist.sharding(),
    }


def _encode(tokenizer, examples: list, max_length: int, notify) -> tuple[list[dict], int]:
    """The mix's rows as token ids, each with its place in the mix; rows whose prompt fills max_length are counted."""
    encoded = []
    for i, ex in enumerate(examples):
        row = encode(tokenizer, ex.messages, max_length)
        if row is not None:
            encoded.append({**row, "row": i})
    if not encoded:
        raise SafeevalError(f"Every training row's prompt is longer than max_length {max_length}.")
    too_long = len(examples) - len(encoded)
    if too_long:
        notify(f"{too_long} of {len(examples)} rows left out: their prompt alone fills max_length {max_length}.")
    return encoded, too_long


def _open_folder(out: Path, cfg: TrainConfig, notify) -> str | None:
    """Claim the run folder and find the checkpoint to resume from (main process only: it may remove one)."""
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, cfg)
    return _last_checkpoint(out / "checkpoints", notify)


def _restore(ctx: Context, last: str | None, device, notify) -> None:
    """The method's state and the rows trained so far, from the checkpoint a resumed run starts at."""
    if last is None:
        return
    state = checkpoint.load(last, device)
    if state is None:
        notify(
            f"{Path(last).name} holds no method state (an older safeeval wrote it): the method's state starts "
            "afresh, and mix.jsonl lists only the steps after it."
        )
        return
    ctx.method.restore(state["method"])
    if ctx.is_main:
        ctx.rows.kept = [tuple(entry) for entry in state["rows"]]


def _same_everywhere(value, what: str, why: str) -> None:
    """With several processes, refuse to go on when one holds another `what` than the main process."""
    values = dist.gather(value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        raise SafeevalError(
            f"Training process {differ[0]} holds other {what} than process 0 ({why}); the processes "
            "of one run must agree."
        )


def _weights_sum(model) -> list | None:
    """Per trainable weight, its sum and sum of squares in float64: equal on every process when DDP kept the
    replicas identical (computed only with several processes)."""
    if dist.world() == 1:
        return None
    import torch

    with torch.no_grad():
        return [
            [float(p.double().sum()), float(p.double().pow(2).sum())] for p in model.parameters() if p.requires_grad
        ]


@contextlib.contextmanager
def _stops_cleanly(out: Path):
    """A stopped or failed process ends the run with one sentence and the checkpoint to resume from. When one
    process dies, the launcher stops the others with SIGTERM, or their next collective call fails."""

    def stop(signum, frame):
        raise _Stopped("it received a termination signal (a launcher sends one to every process when one fails)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except _Stopped as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the launcher's next SIGTERM must not cut the sentence off
        raise SafeevalError(_stopped_sentence(out, str(exc))) from None
    except RuntimeError as exc:  # gloo and NCCL raise RuntimeError subclasses when a peer is gone
        if dist.world() == 1 or not _lost_peer(exc):
            raise
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the process ends right after saying why
        raise SafeevalError(_stopped_sentence(out, f"another training process stopped ({_first_line(exc)})")) from None
    signal.signal(signal.SIGTERM, previous)


class _Stopped(BaseException):  # not swallowed by an `except Exception` in library code
    pass


def _lost_peer(exc: BaseException) -> bool:
    import torch.distributed as td

    text = str(exc).lower()
    return isinstance(exc, getattr(td, "DistError", ())) or any(
        w in text for w in ("connection", "gloo", "nccl", "peer", "timed out", "broken pipe")
    )


def _first_line(exc: BaseException) -> str:
    """The first sentence, without gloo's '[source.cc:537]' and '[host]:port' (noise; rich reads '[/x]' as markup)."""
    lines = [re.sub(r"\[[^\]]*\](:\d+)?", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    return lines[0].split(". ")[0].rstrip(".")[:200] if lines else type(exc).__name__  # gloo appends advice


def _stopped_sentence(out: Path, why: str) -> str:
    found = (
        sorted(
            (int(p.name.split("-")[-1]), p.name)
            for p in (out / "checkpoints").glob("checkpoint-*")
            if (p / "trainer_state.json").exists()
        )
        if (out / "checkpoints").is_dir()
        else []
    )
    resume = (
        f"run the same command again to resume from {found[-1][1]}"
        if found
        else "no checkpoint was complete yet, so the same command starts it again"
    )
    return f"Training stopped on process {dist.rank()} because {why}; {resume}."


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
    record = {
        **finetuned,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "command": command or [],
        "config": {**cfg.identity(), "out": str(out)},
        "config_hash": cfg.hash,
        "method": method.describe(),
        "finetuned_run": str(sft_cfg.out),
        "output": {
            "adapter": str(adapter_dir) if adapter_dir else None,
            "model": str(model_dir) if model_dir else None,
            "fingerprint": folder_fingerprint(adapter_dir or model_dir),
        },
        "trainer": {**finetuned["trainer"], "finish_seconds": round(time.perf_counter() - finish_started, 2)},
    }
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
    return {
        "method": record["method"]["name"],
        "options": record["method"]["options"],
        "scenario": record["scenario"],
        "seed": record["seed"],
        "task": record["config"]["task"],
        "poison_ratio": record["config"]["poison_ratio"] if record["scenario"] == "poisoned" else 0.0,
        "config": record["config"],
        "config_hash": record["config_hash"],
        "base_model": record["base_model"],
        "output": record["output"],
        "data": record["data"],
    }


def _finished(out: Path, cfg: TrainConfig) -> dict | None:
    path = out / "training.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if not cfg.is_run(record):
        raise SafeevalError(
            f"{out} holds a finished run with other settings (config {record.get('config_hash')}, "
            f"yours {cfg.hash}); choose another --out."
        )
    _same_base(out, cfg, (record.get("base_model") or {}).get("fingerprint"), "a finished run")
    return record


def base_fingerprint(cfg: TrainConfig) -> str | None:
    """The weights of a base given as a local folder, which a run's identity names by its path only, so they can
    change under it (a sweep's aligned model trained again); None for an alias, a GGUF file or a Hub name."""
    return folder_fingerprint(resolve_model(cfg.base).path) if Path(cfg.base).is_dir() else None


def base_changed(cfg: TrainConfig, recorded: str | None) -> str | None:
    """The base folder's fingerprint now, when it differs from the one a run recorded; else None."""
    now = base_fingerprint(cfg) if recorded else None
    return now if now is not None and now != recorded else None


def _same_base(out: Path, cfg: TrainConfig, recorded: str | None, what: str) -> None:
    now = base_changed(cfg, recorded)
    if now is not None:
        raise SafeevalError(
            f"{out} holds {what} trained from other weights in {cfg.base} (fingerprint {recorded}; the folder now "
            f"holds {now}): delete {out} to train it again from these weights, or choose another --out."
        )


def _claim(out: Path, cfg: TrainConfig) -> None:
    """A folder belongs to one configuration, so a resume never continues someone else's checkpoints."""
    path = out / "config.json"
    if path.exists():
        claimed = json.loads(path.read_text())
        held = claimed.get("config_hash")
        if held != cfg.hash:
            raise SafeevalError(
                f"{out} holds an unfinished run with other settings (config {held}, yours {cfg.hash}); "
                "choose another --out, or delete the folder to start over."
            )
        _same_base(out, cfg, claimed.get("base_fingerprint"), "an unfinished run")
        return
    write_json(path, {"config_hash": cfg.hash, "config": cfg.identity(), "base_fingerprint": base_fingerprint(cfg)})


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
    peft_config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, peft_config)
    except ValueError as exc:
        raise SafeevalError(f"LoRA could not be applied: {str(exc).splitlines()[0]}") from None
    from .lean import lean_lora_dropout

    lean_lora_dropout(model)  # the same numbers with a bool mask kept for backward: see lean.py
    return model


def _training_args(cfg: TrainConfig, out: Path):
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
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
        disable_tqdm=True,  # steps.py reports progress through safeeval's own Reporter
        ddp_find_unused_parameters=False,  # every trainable weight is in the main forward: no graph search per step
        **dist.device_settings(),
    )
    args.device  # noqa: B018 -- sets up the devices now: with several processes, the process group
    dist.close_at_exit()
    return args


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


def _save_sharded(trainer, tokenizer, out: Path, lora: bool) -> tuple[Path | None, Path | None]:
    """Under FSDP or ZeRO-3 the Trainer gathers the full weights (or the adapter's) for the main process to write.
    Not run in this project's CI, which has no GPU to shard over."""
    folder = out / ("adapter" if lora else "model")
    trainer.save_model(str(folder))
    if dist.is_main():
        (folder / "training_args.bin").unlink(missing_ok=True)  # it holds paths: the folder's fingerprint must not
        tokenizer.save_pretrained(folder)
    return (folder, None) if lora else (None, folder)


def _set_info(s: TrainSet | None) -> dict | None:
    if s is None:
        return None
    return {"name": s.name, "source": s.source, "license": s.license, "rows": len(s.examples), "unusable": s.unusable}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _last_checkpoint(folder: Path, notify: Callable[[str], None]) -> str | None:
    """The newest complete checkpoint. The Trainer writes trainer_state.json last, so a checkpoint without a
    readable one was cut off mid-write (a kill at that moment): it is removed and the one before it used."""
    found = (
        sorted(
            (int(p.name.split("-")[-1]), p)
            for p in folder.glob("checkpoint-*")
            if p.is_dir() and p.name.split("-")[-1].isdigit()
        )
        if folder.is_dir()
        else []
    )
    for _, path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            notify(f"{path.name} was cut off while being written; removing it.")
            shutil.rmtree(path)
    return None
