"""safeeval: did fine-tuning make this model less safe?"""

__version__ = "0.1.0"
