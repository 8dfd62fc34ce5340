"""The small interface through which library code reports progress; the CLI decides how it is drawn.

A reporter is called as `reporter(description, total)` and yields a function that advances the stage by n.
Library code never draws anything itself, so the same code runs under a terminal, a log file or a test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator

Reporter = Callable[[str, int], contextlib.AbstractContextManager]
Say = Callable[[str], None]


@contextlib.contextmanager
def silent(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


def quiet_libraries(verbose: bool = False) -> None:
    """Our progress is the one to read: the libraries' own bars, INFO lines and notices are noise unless asked for.
    Set before the libraries are imported where possible (environment), and again on their loggers."""
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TQDM_DISABLE", "1")  # GGUF conversion and others draw tqdm bars into logs
    for name in ("vllm", "transformers", "datasets", "huggingface_hub", "accelerate", "peft", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
