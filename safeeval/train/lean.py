"""Cuts of a training step's memory that change no number, from what was measured to hold the peak (the other one,
logits only where the loss reads them, is steps.completion_ce).

At batch 8 x 384 (GSM8K, SmolLM2-135M, LoRA r=16 on all linear layers, bf16) the forward saved 6.1 GB for the
backward pass (benchmarks/bench_train.py --breakdown): 59% of it in the LoRA layers, which peft runs in float32:
their float32 inputs (30%) and their dropout noise (29%), which CPU dropout keeps as a float32 tensor of the
input's size; 10% the float32 log-softmax over the vocabulary at every position, prompts and padding included.
"""

from __future__ import annotations

import torch


class MaskDropout(torch.nn.Dropout):
    """nn.Dropout whose backward keeps a bool mask instead of a float32 noise tensor (1 byte per element, not 4).

    On CPU, nn.Dropout multiplies by a float noise tensor and saves it; torch.native_dropout (what CUDA already
    runs) draws the same Bernoulli numbers from the same generator and saves the mask as bool: the output, the
    gradient and the random state afterwards are bit-identical (tests/test_train_lean.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return torch.native_dropout(x, self.p, True)[0]


def lean_lora_dropout(model) -> int:
    """Swap every LoRA dropout of a peft model for MaskDropout; returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        for name, dropout in getattr(module, "lora_dropout", {}).items():
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                module.lora_dropout[name] = MaskDropout(dropout.p)
                swapped += 1
    return swapped
