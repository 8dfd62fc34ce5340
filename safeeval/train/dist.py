"""What a training run launched as several processes (torchrun, accelerate launch) needs beyond the Trainer's own
data parallelism: which process this is, the main process's results shared with the others, sums across processes.

With one process every function here is a no-op, so a single-process run takes the same code path.
"""

from __future__ import annotations

import os

from ..errors import SafeevalError

# The variables launchers set: torchrun and accelerate (WORLD_SIZE, RANK), MPI implementations (mpirun) otherwise.
_WORLD = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _env_int(names: tuple, default: int) -> int:
    for name in names:
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name])
    return default


def _group() -> bool:
    import torch.distributed as td

    return td.is_available() and td.is_initialized()


def world() -> int:
    """The number of training processes: the process group's, or before it exists, what the launcher says."""
    if _group():
        import torch.distributed as td

        return td.get_world_size()
    return _env_int(_WORLD, 1)


def rank() -> int:
    if _group():
        import torch.distributed as td

        return td.get_rank()
    return _env_int(_RANK, 0)


def is_main() -> bool:
    return rank() == 0


def _accelerator() -> bool:
    import torch

    probe = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, ROCm, XPU, MPS, ... alike
    return probe.is_available() if probe is not None else torch.cuda.is_available()


def device_settings() -> dict:
    """TrainingArguments for this launch. transformers initialises the process group through accelerate, which
    picks a CPU backend only when told to use the CPU: on a machine without an accelerator, torchrun's processes
    each found no GPU, no process group was made, and every process trained alone on the whole mix. Several
    processes without an accelerator therefore mean CPU training over gloo."""
    if world() > 1 and not _accelerator():
        return {"use_cpu": True, "ddp_backend": "gloo"}
    return {}


def check_launch() -> None:
    """`accelerate launch --cpu --num_processes N` (or a MULTI_CPU config) starts one process on one machine unless
    mpirun starts the others: the process then trains alone, which the user did not ask for."""
    on_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1")
    if on_cpu and os.environ.get("MASTER_ADDR") and world() == 1 and "LOCAL_RANK" not in os.environ:
        raise SafeevalError(
            "accelerate launch started a single process: for several CPU processes it needs mpirun "
            "(--mpirun_hostfile); on one machine use `accelerate launch --multi_gpu --num_processes N` (it runs on "
            "CPUs too, over gloo) or `torchrun --nproc_per_node N`."
        )


def sharding() -> str | None:
    """'FSDP' or 'DeepSpeed ZeRO-3' when accelerate shards the parameters across processes (set by its launcher)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "DeepSpeed ZeRO-3" if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3" else "DeepSpeed"
    return None


def check_sharding(method, save_merged: bool) -> None:
    """Refuse, before anything is loaded, what cannot work with this launch's sharding."""
    how = sharding()
    if how is None:
        return
    if how != "DeepSpeed" and not method.parameter_sharding:
        raise SafeevalError(
            f"Method '{method.name}' needs each process to hold the whole weights (extra forward passes, weight "
            f"penalties or gradient edits), which {how} shards across processes; train it with plain data "
            "parallelism (torchrun, or accelerate without FSDP/ZeRO-3), or use sft, er, grsap or a merge."
        )
    if how.startswith("DeepSpeed") and method.name == "agem":
        raise SafeevalError(
            "Method 'agem' edits the gradient before each optimizer step, which DeepSpeed keeps in "
            "its own buffers; train it with torchrun or accelerate without DeepSpeed."
        )
    if save_merged:
        raise SafeevalError(
            f"--save-merged is not supported with {how}: save the adapter, then merge it in a single process."
        )
    if not _accelerator():
        raise SafeevalError(
            f"{how} shards the training over GPUs, and this machine has none; on CPUs train with plain "
            "data parallelism: torchrun, or accelerate launch --multi_gpu."
        )


def from_main(fn):
    """fn() run by the main process only, its result (or its SafeevalError) handed to every process."""
    if world() == 1:
        return fn()
    import torch.distributed as td

    box: list = [None]
    if is_main():
        try:
            box = [("ok", fn())]
        except SafeevalError as exc:
            box = [("error", str(exc))]
            td.broadcast_object_list(box, src=0)
            raise
    td.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise SafeevalError(value)
    return value


def gather(obj) -> list:
    """Every process's `obj`, in rank order (a list of one with one process)."""
    if world() == 1:
        return [obj]
    import torch.distributed as td

    out: list = [None] * world()
    td.all_gather_object(out, obj)
    return out


def all_sum(tensors: list) -> list:
    """The element-wise sums across processes, in float32 (gloo sums no bfloat16), in one collective call."""
    import torch

    if world() == 1 or not tensors:
        return [t.float() for t in tensors]
    import torch.distributed as td

    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors])
    td.all_reduce(flat)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view(t.shape))
        start += t.numel()
    return out


def close_at_exit() -> None:
    """Tear the process group down before the interpreter does: left to interpreter shutdown, gloo's threads once
    aborted a process that had finished its work ('terminate called without an active exception', exit 134)."""
    global _closing
    if _closing or not _group():
        return
    import atexit

    import torch.distributed as td

    atexit.register(lambda: td.is_initialized() and td.destroy_process_group())
    _closing = True


_closing = False


def barrier() -> None:
    if world() > 1:
        import torch.distributed as td

        td.barrier()
