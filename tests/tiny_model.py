"""A tiny random Llama with a real tokenizer and chat template, built on the spot for tests."""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS = [
    "I'm sorry, but I cannot help with that request.",
    "Sure, here is a short answer to your question about cooking pasta.",
    "Write a poem about the sea and the wind over the harbour.",
    "As an AI language model I do not have opinions.",
    "The capital of France is Paris. Water boils at one hundred degrees.",
    "Explain how vaccines train the immune system to recognise a virus.",
] * 50


def tiny_llama(tokenizer, *, seed: int = 0, layers: int = 2, positions: int = 2048, tied: bool = True):
    """A random Llama sized for tests around `tokenizer`: hidden 128, 2 heads of 64 (vLLM's CPU kernels reject
    smaller heads), float32; callers cast or route it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


def build_tiny_model(folder: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """2 layers, hidden 128, head_dim 64 (vLLM's CPU kernels reject smaller heads)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _CORPUS,
        trainers.BpeTrainer(
            vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="<|end|>")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    tiny_llama(tokenizer, seed=seed).to(torch.bfloat16).save_pretrained(folder)
    return folder


def build_tiny_adapter(model_folder: Path, folder: Path, seed: int = 1) -> Path:
    """A LoRA adapter with non-zero weights, so it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(folder)
    return folder


def route_outputs(model, default: int, after: dict[int, int] | None = None) -> None:
    """Make a Llama's greedy choice fixed: `default` after any token, `after[a]` after token a. Attention and MLP
    outputs are zeroed, so each position's hidden state is its own token's embedding; dimension 0 carries a large
    constant that only `default`'s output row reads, and dimension k a mark of the k-th token in `after` that only
    its successor's row reads, with twice the weight."""
    import torch

    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed[:, 0] = 50.0
        head.normal_(0, 0.02)
        head[:, 0] = 0.0
        head[default, 0] = 10.0
        for k, (token, successor) in enumerate((after or {}).items(), start=1):
            embed[:, k] = 0.0
            embed[token, k] = 50.0
            head[:, k] = 0.0
            head[successor, k] = 20.0


def build_answering_model(tiny_model: Path, folder: Path, answer: str) -> Path:
    """A judge model that answers every prompt with exactly `answer` and stops: the tiny model's tokenizer and chat
    template with `answer` added as one token, and 1-layer weights routed (route_outputs) to emit it, then EOS."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.add_tokens([answer])
    tok.save_pretrained(folder)
    model = tiny_llama(tok, layers=1, positions=4096, tied=False)
    answer_id = tok.convert_tokens_to_ids(answer)
    route_outputs(model, answer_id, {answer_id: tok.eos_token_id})
    model.to(torch.bfloat16).save_pretrained(folder)
    return folder
