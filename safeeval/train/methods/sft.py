"""Plain supervised fine-tuning on the user's data: the baseline every method is measured against."""

from .base import Method


class SFT(Method):
    name = "sft"
    help = "Standard fine-tuning on the user's data (the baseline)."
    parameter_sharding = True
