"""The one interface every generation backend implements: chats in, texts out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

Chat = list[dict[str, str]]  # [{"role": "user", "content": "..."}]
Prompt = Chat | str  # a str is a prompt already in the model's own format: no chat template is applied


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters that mean the same on every backend."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    index: int  # position in the list of chats given to generate()
    text: str
    finish_reason: str | None = None  # "stop" or "length" (truncated at max_new_tokens)
    n_tokens: int | None = None


# What a backend can declare. "local": runs weights from a folder (a model name is resolved to one); "remote": an
# endpoint serving a model by name; "raw_prompts": takes a str prompt without a chat template; "lora": runs an
# adapter; "chat_template": applies a chat template it is given; "tensor_parallel": splits a model over devices.
CAPABILITIES = frozenset({"local", "remote", "raw_prompts", "lora", "chat_template", "tensor_parallel"})


class Backend(Protocol):
    name: str  # its registry name: "hf", "vllm", "openai"
    capabilities: frozenset[str]  # a subset of CAPABILITIES
    fingerprint: str  # identity of the model behind it: weights, adapter, dtype
    info: dict  # what results.json records about the model (never secrets)
    # Optional `merged: bool`: True when a LoRA adapter was merged into the weights before generating (part of the
    # generation key, see generation.generation_keys); a backend without the attribute never merges.

    def load(self) -> None:
        """Start the engine now; backends otherwise start it lazily, so a run served from the store is cheap."""

    def render(self, chat: Prompt) -> str:
        """The exact prompt the model sees; part of every generation's cache key."""

    def generate(self, chats: list[Prompt], params: GenParams) -> Iterator[list[Completion]]:
        """Yield completions in groups as they finish, so callers can save each group at once."""

    def close(self) -> None: ...


def render_as_json(chat: Prompt) -> str:
    """The canonical prompt for endpoints that apply their template server-side (raw prompts as they are)."""
    if isinstance(chat, str):
        return chat
    return json.dumps(chat, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
