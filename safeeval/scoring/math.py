"""MATH: the last \\boxed{} answer of a response, equal to the reference by math-verify.

The answer is the content of the response's last `\\boxed{...}`, braces balanced; the form `\\boxed 5` runs to
the next "$", as in lm-evaluation-harness. (`\\fbox{}` is not read: math_verify ignores it, and lm-eval's
hendrycks_math finds it but then fails an assertion.) No boxed answer (or an empty or unclosed one):
unparsed, counted wrong. The reference is the target: MATH-500's `answer`, or a full solution, whose last
boxed answer is then taken. Both are parsed by math_verify as `\\boxed{...}` (what math_verify itself
extracts from a response) and compared with `math_verify.verify(gold, answer)`, which accepts equal
values written differently (\\frac{1}{2} and 0.5, 2\\sqrt{2} and \\sqrt{8}, tuples with spaces, 10\\% and 10).

summarize() gives accuracy per subject and per level (sample meta `subject`, `level`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from functools import lru_cache

from ..data import Sample
from ..judging.base import Verdict
from ..metrics import rate
from . import Scorer

TIMEOUT_S = 5  # math_verify's own default; its timeout needs signals, so only on the main thread


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}; None when there is none or it is not closed."""
    idx = text.rfind("\\boxed")
    if idx < 0:
        return None
    rest = text[idx + len("\\boxed") :]
    if rest.startswith(" "):  # "\boxed 5$": up to the next dollar sign
        return rest.split("$")[0].strip()
    start = rest.find("{")
    if start < 0 or rest[:start].strip():
        return None
    depth = 0
    for i in range(start, len(rest)):
        if rest[i] == "{":
            depth += 1
        elif rest[i] == "}":
            depth -= 1
            if depth == 0:
                return rest[start + 1 : i]
    return None


def _timeout() -> int | None:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=8192)
def _parse(answer: str, timeout: int | None):
    from math_verify import parse

    return parse("\\boxed{" + answer + "}", parsing_timeout=timeout)


def gold_answer(target: str) -> str:
    """A reference that holds a boxed answer (a full solution) gives that answer; else it is the answer."""
    boxed = last_boxed(target) if "\\boxed" in target else None
    return boxed if boxed is not None else target.strip()


def equivalent(gold: str, answer: str) -> bool:
    from math_verify import verify

    timeout = _timeout()
    try:
        return bool(verify(_parse(gold, timeout), _parse(answer, timeout), timeout_seconds=timeout))
    except Exception:  # math_verify catches its own errors; anything else is a mismatch, never a crash
        return False


class MathScorer(Scorer):
    def score_one(self, sample: Sample, response: str) -> Verdict:
        gold = gold_answer(sample.target or "")
        answer = last_boxed(response)
        if answer is None or not answer.strip():
            return Verdict(None, status="unparsed", note="no \\boxed{} answer", extra={"gold": gold})
        answer = answer.strip()
        return Verdict(
            None, score=float(equivalent(gold, answer)), note=answer[:200], extra={"gold": gold, "answer": answer}
        )

    def summarize(self, samples: list[Sample], verdicts: list[dict], seed: int) -> dict:
        out = {}
        for field in ("subject", "level"):
            by = defaultdict(list)
            for s, v in zip(samples, verdicts):
                if v["status"] != "not_judged":
                    by[str(s.meta.get(field))].append(v["status"] == "ok" and bool(v.get("score")))
            out[f"by_{field}"] = {k: rate(by[k], seed) for k in sorted(by)}
        return out
