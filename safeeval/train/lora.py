"""The weight update a LoRA adapter makes, read from a peft model: what weight-space methods measure and edit.

Kept apart from the trainer so the methods that read it do not import the trainer that imports them.
"""

from __future__ import annotations


def lora_factors(model):
    """(base weight name, A, B, scale) per LoRA layer: the factors, so a penalty need not form B @ A."""
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            yield (
                base_name(name) + ".weight",
                module.lora_A["default"].weight,
                module.lora_B["default"].weight,
                module.scaling["default"],
            )


def lora_layers(model):
    """(base weight name, base weight, scale * B @ A) for every LoRA layer of a peft model."""
    modules = dict(model.named_modules())
    for name, a, b, scale in lora_factors(model):
        layer = modules["base_model.model." + name.removesuffix(".weight")]
        yield name, layer.get_base_layer().weight, (b @ a) * scale


def base_name(peft_name: str) -> str:
    """'base_model.model.model.layers.0.mlp.up_proj' -> 'model.layers.0.mlp.up_proj' (the base model's name)."""
    return peft_name.removeprefix("base_model.model.")
