"""Fine-tuning an aligned model on a user's task with a continual-learning method, then scoring it."""

from .config import TrainConfig, load_config
from .trainer import train, training_block

__all__ = ["TrainConfig", "load_config", "train", "training_block"]
