"""transformers in-process: batched, left-padded, batches of similar length."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import SafeevalError
from ..keys import model_fingerprint
from ..models import ModelRef, folder_fingerprint, load_tokenizer
from .base import Completion, GenParams, Prompt


def render(tokenizer, prompt: Prompt) -> str:
    """A raw prompt as it is; a chat through the model's own template, ready for the assistant's turn."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def tokenize(tokenizer, prompt: Prompt, rendered: str) -> list[int]:
    """A chat template writes its own BOS; a raw prompt gets the tokenizer's, as its model expects."""
    return tokenizer(rendered, add_special_tokens=isinstance(prompt, str))["input_ids"]


MAX_PADDING = 2  # no prompt is padded to more than this many times its length (benchmarks/bench_batching.py)


def batches(order: list[int], lengths: list[int], size: int) -> Iterator[list[int]]:
    """Runs of `order` (longest first) of at most `size` prompts; a batch also ends before a prompt shorter than
    1/MAX_PADDING of its longest, so a few long prompts (HarmBench's contexts) do not pad a whole batch of short ones
    to their length: padding costs prefill time, and attention its square."""
    start = 0
    while start < len(order):
        longest, end = lengths[order[start]], start + 1
        while end < len(order) and end - start < size and lengths[order[end]] * MAX_PADDING >= longest:
            end += 1
        yield order[start:end]
        start = end


def resolve_dtype(dtype: str, config_dtype) -> str:
    """'auto' keeps a half-precision checkpoint as it is and runs float32 ones in bfloat16, as vLLM does."""
    if dtype != "auto":
        return dtype
    name = str(config_dtype).replace("torch.", "") if config_dtype is not None else "float32"
    return name if name in ("bfloat16", "float16") else "bfloat16"


class HFBackend:
    name = "hf"
    capabilities = frozenset({"local", "raw_prompts", "lora", "chat_template"})

    def __init__(
        self,
        model: ModelRef,
        *,
        adapter: str | None = None,
        dtype: str = "auto",
        chat_template: str | None = None,
        batch_size: int = 16,
        merge_adapter: bool = True,
    ):
        """merge_adapter: generate with the adapter merged into a copy of the weights (the default: through an
        unmerged adapter every LoRA layer adds two matmuls per token, 1.39x slower on CPU, bench_merged.py);
        False keeps it unmerged."""
        import torch
        from transformers import AutoConfig

        self.tokenizer = load_tokenizer(model.path, chat_template)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        config = AutoConfig.from_pretrained(model.path)
        self.dtype = resolve_dtype(dtype, getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.path, self.adapter, self.batch_size = model.path, adapter, batch_size
        self.merged = bool(adapter) and merge_adapter  # part of the generation key: see keys.generation_key
        self.model = None  # loaded on first generate(): a run served from the store never pays for it
        adapter_fp = ""
        if adapter:
            if not Path(adapter).is_dir():
                raise SafeevalError(f"Adapter folder {adapter} does not exist.")
            adapter_fp = folder_fingerprint(Path(adapter))
        self.fingerprint = model_fingerprint(folder_fingerprint(model.path), adapter_fp, self.dtype)
        self.info = {
            "name": model.name,
            "path": str(model.path),
            "source": model.source,
            "adapter": adapter,
            "dtype": self.dtype,
            "device": self.device,
            "fingerprint": self.fingerprint,
            "merged": self.merged,
        }

    def load(self) -> None:
        """Load the weights now (otherwise the first generate() does)."""
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, self.dtype)).to(self.device)
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter)
            if self.merged:  # into this process's own copy of the base weights; the files are untouched
                model = model.merge_and_unload()
        model.eval()
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.model = model

    def render(self, chat: Prompt) -> str:
        return render(self.tokenizer, chat)

    def generate(self, chats: list[Prompt], params: GenParams) -> Iterator[list[Completion]]:
        import torch
        from transformers import set_seed

        self.load()
        ids = [tokenize(self.tokenizer, c, self.render(c)) for c in chats]
        # Longest first: similar lengths waste less padding, and an out-of-memory shows up at once.
        order = sorted(range(len(chats)), key=lambda i: -len(ids[i]))
        set_seed(params.seed)
        sampling = (
            {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
            if params.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        for batch in batches(order, [len(i) for i in ids], self.batch_size):
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt").to(self.model.device)
            with torch.inference_mode():
                out = self.model.generate(
                    **enc, max_new_tokens=params.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
                )
            new = out[:, enc["input_ids"].shape[1] :].tolist()
            yield [self._completion(i, row, params.max_new_tokens) for i, row in zip(batch, new)]

    def _completion(self, index: int, row: list[int], limit: int) -> Completion:
        stop = next((k for k, t in enumerate(row) if t in self.eos_ids), None)
        tokens = row if stop is None else row[:stop]
        reason = "stop" if stop is not None or len(row) < limit else "length"
        return Completion(index, self.tokenizer.decode(tokens, skip_special_tokens=True), reason, len(tokens))

    def close(self) -> None:
        self.model = None
