"""GSM8K: the final number of a worked answer against the number after "####" in the reference.

Extraction and normalisation are lm-evaluation-harness's gsm8k task (tasks/gsm8k/gsm8k.yaml, v3.0), so that
both of its figures come out of every verdict:
  strict    the number after the first "#### " (regex `#### (\\-?[0-9\\.\\,]+)`, first match)
  flexible  the last number anywhere (regex `(-?[$0-9.,]{2,})|(-?[0-9]+)`, last match)
Both sides are then normalised by lm-eval's exact_match settings: remove ",", "$", everything up to "#### ",
one trailing ".", then lower-case; the answer is right when the strings are equal.

The main score (`answer` option) is, by default, "strict-then-flexible": the number after "####" when the
answer has one, else the last number. That is the GSM8K accuracy of GR-SAP (the seed paper whose evaluation
code we could read: "number after ####, else the last number"); it neither rewards a model for format alone
(strict) nor picks a later stray number over the answer it marked (flexible). `strict` and `flexible` give
lm-eval's figures instead; summarize() reports both whichever is chosen. No number at all: unparsed (wrong).
"""

from __future__ import annotations

import re

from ..data import Sample
from ..errors import SafeevalError
from ..judging.base import Verdict
from ..metrics import rate
from . import Scorer

STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORE = [re.compile(p) for p in (",", "\\$", "(?s).*#### ", "\\.$")]  # gsm8k.yaml regexes_to_ignore, in order
MODES = ("strict-then-flexible", "strict", "flexible")


def strict_answer(text: str) -> str | None:
    found = STRICT.findall(text)
    return found[0].strip() if found else None


def flexible_answer(text: str) -> str | None:
    found = FLEXIBLE.findall(text)
    if not found:
        return None
    groups = [g for g in found[-1] if g]
    return groups[0].strip() if groups else None


def normalize(text: str) -> str:
    for pattern in IGNORE:
        text = pattern.sub("", text)
    return text.lower()


class GSM8KScorer(Scorer):
    def __init__(self, name: str, options: dict):
        options = {"answer": "strict-then-flexible", **options}
        if options["answer"] not in MODES:
            raise SafeevalError(f"Scorer gsm8k: option answer='{options['answer']}' is not one of {', '.join(MODES)}.")
        super().__init__(name, options)
        self.mode = options["answer"]

    def score_one(self, sample: Sample, response: str) -> Verdict:
        gold = normalize(sample.target or "")
        strict, flexible = strict_answer(response), flexible_answer(response)
        strict_ok = strict is not None and normalize(strict) == gold
        flexible_ok = flexible is not None and normalize(flexible) == gold
        if self.mode == "strict":
            answer, source = strict, "strict"
        elif self.mode == "flexible":
            answer, source = flexible, "flexible"
        else:
            answer, source = (strict, "strict") if strict is not None else (flexible, "flexible")
        extra = {
            "strict": strict,
            "flexible": flexible,
            "strict_correct": strict_ok,
            "flexible_correct": flexible_ok,
            "gold": gold,
            "source": source if answer is not None else None,
        }
        if answer is None:
            return Verdict(None, status="unparsed", note="no number", extra=extra)
        correct = strict_ok if source == "strict" else flexible_ok
        return Verdict(None, score=float(correct), note=answer, extra=extra)

    def summarize(self, samples: list[Sample], verdicts: list[dict], seed: int) -> dict:
        scored = [v.get("extra") or {} for v in verdicts if v["status"] != "not_judged"]
        return {
            "exact_match_strict": rate([bool(e.get("strict_correct")) for e in scored], seed),
            "exact_match_flexible": rate([bool(e.get("flexible_correct")) for e in scored], seed),
        }
