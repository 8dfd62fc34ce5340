"""The shared part of every judge that asks a model: build prompts, generate through the store, parse.

A judge kind subclasses ModelJudge and writes three small things: `prompt_format()` (what identifies
its input format, for the fingerprint), `build()` (one prompt per response) and `parse()` (one verdict
per judge output, raising ValueError when the output fits no expected shape).
"""

from __future__ import annotations

import re

from ..backends import Backend, GenParams
from ..backends.base import Prompt
from ..data import Sample
from ..errors import SafeevalError
from ..generation import generate_cached
from ..keys import digest
from .base import Verdict

_ZWSP = "\u200b"


def neutralize(text: str, markers: list[str] | tuple[str, ...]) -> str:
    """Insert a zero-width space after the first character of every marker (a special token, a format delimiter,
    an answer tag), ignoring case, so a response cannot close the judge's prompt, inject a turn of its own or forge
    an answer line. Readers see no change. Idempotent."""
    for marker in sorted({m for m in markers if m and len(m) > 1}, key=len, reverse=True):
        text = re.sub(re.escape(marker), lambda m: m.group(0)[0] + _ZWSP + m.group(0)[1:], text, flags=re.IGNORECASE)
    return text


class ModelJudge:
    kind = "model"
    parser_version = 1
    default_max_new_tokens = 16
    batch = 64  # responses per saved group: the judging progress bar moves at this step

    def __init__(self, name: str, config: dict, backend: Backend, runtime):
        self.name, self.config, self.backend, self.runtime = name, config, backend, runtime
        self.params = GenParams(
            max_new_tokens=int(config.get("max_new_tokens") or self.default_max_new_tokens), temperature=0.0
        )
        self.fingerprint = digest(
            [
                self.kind,
                self.parser_version,
                backend.name,
                backend.fingerprint,
                self.prompt_format(),
                self.params.as_dict(),
            ]
        )
        self.info = {
            "kind": self.kind,
            "model": backend.info.get("name"),
            "backend": backend.name,
            "model_fingerprint": backend.fingerprint,
            "parser_version": self.parser_version,
            "max_new_tokens": self.params.max_new_tokens,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_spec(cls, spec, variant: str | None, runtime) -> ModelJudge:
        """The spec (with its variant's keys on top), the model the user chose for it, and a backend to run it."""
        from ..backends import make_backend
        from ..registry import JUDGE_KEYS
        from . import judge_name

        name, config = judge_name(spec, variant), dict(spec.data)
        if variant is not None:
            variants = spec.data.get("variants") or {}
            if variant not in variants:
                raise SafeevalError(
                    f"Judge {spec.name} has no variant '{variant}'. Valid variants: {', '.join(variants) or 'none'}."
                )
            unknown = set(variants[variant]) - JUDGE_KEYS
            if unknown:
                raise SafeevalError(f"Judge {spec.path} variant '{variant}' has unknown keys {sorted(unknown)}.")
            config.update(variants[variant])
        model = runtime.models.get(name) or runtime.models.get(spec.name) or config.get("model")
        if not model:
            raise SafeevalError(
                f"Judge {name} needs a model: set 'model' in {spec.path} or pass --judge-model {spec.name}=MODEL."
            )
        options = dict(runtime.options)
        if config.get("chat_template"):  # a backend that applies no template of its own leaves it out
            options.setdefault("chat_template", config["chat_template"])
        backend = make_backend(runtime.backend or config.get("backend") or "hf", model, **options)
        return cls(name, config, backend, runtime)

    # -- what a judge kind writes --------------------------------------------------------------------
    def prompt_format(self) -> str:
        """Everything that shapes the judge's input (template text, format name): part of the fingerprint."""
        raise NotImplementedError

    def build(self, sample: Sample, response: str) -> Prompt:
        raise NotImplementedError

    def parse(self, output: str, sample: Sample) -> Verdict:
        raise NotImplementedError

    def special_markers(self) -> list[str]:
        """Strings a response must not be able to produce verbatim inside the judge prompt."""
        tokenizer = getattr(self.backend, "tokenizer", None)
        if tokenizer is None:
            return []
        # transformers 5 leaves added chat-turn tokens (e.g. <|assistant|>) out of all_special_tokens.
        added = [
            t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)
        ]
        return list(dict.fromkeys([*(tokenizer.all_special_tokens or []), *added]))

    # -- shared ---------------------------------------------------------------------------------------
    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]:
        markers = self.special_markers()
        prompts = [self.build(s, neutralize(r, markers)) for s, r in zip(samples, responses)]
        keys, generations, _ = generate_cached(self.backend, self.runtime.store, prompts, self.params)
        verdicts = []
        for sample, k in zip(samples, keys):
            output = generations[k]["response"]
            try:
                verdict = self.parse(output, sample)
            except ValueError as exc:
                verdict = Verdict(None, status="unparsed", note=str(exc)[:200])
            verdict.raw = output  # always kept: a later parser fix re-reads it without calling the model
            verdicts.append(verdict)
        return verdicts

    def close(self) -> None:
        self.backend.close()
