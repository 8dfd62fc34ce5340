"""Utility scorers: answers -> correct or not. A scorer has the judge protocol, so the store caches
its verdicts like any judge's (HumanEval's sandboxed runs are not repeated on a re-run).

A scorer's verdict: `score` 1.0 / 0.0 (or a fraction), `status` "ok", or "unparsed" when no answer
could be extracted (counted as wrong and shown), `note` the extracted answer, `extra` the details.
"""

from __future__ import annotations

from ..data import Sample
from ..errors import SafeevalError
from ..judging.base import Verdict
from ..keys import digest
from ..plugins import Registry
from ..registry import Spec

# Each scorer is one small file in this folder.
SCORERS = Registry(
    "scorer",
    {
        "gsm8k": "safeeval.scoring.gsm8k:GSM8KScorer",
        "sst2": "safeeval.scoring.sst2:SST2Scorer",
        "humaneval": "safeeval.scoring.humaneval:HumanEvalScorer",
        "math": "safeeval.scoring.math:MathScorer",
        "lmeval": "safeeval.scoring.lmeval:LMEvalScorer",
    },
)


class Scorer:
    """Base: a name, options and a version make the fingerprint; subclasses write score_one or judge."""

    version = 1
    batch = 256

    def __init__(self, name: str, options: dict):
        self.name, self.kind, self.options = name, f"scorer:{name}", dict(options)
        self.fingerprint = digest([self.kind, self.version, self.options])
        self.info = {
            "kind": self.kind,
            "version": self.version,
            "options": self.options,
            "fingerprint": self.fingerprint,
        }

    def score_one(self, sample: Sample, response: str) -> Verdict:
        raise NotImplementedError

    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]:
        return [self.score_one(s, r) for s, r in zip(samples, responses)]

    def summarize(self, samples: list[Sample], verdicts: list[dict], seed: int) -> dict:
        """Metrics beyond plain accuracy (per subject, strict vs flexible, pass@k...)."""
        return {}

    def close(self) -> None:
        pass


def make_scorer(spec: Spec, sandbox_allow: list[str] = ()) -> Scorer:
    """`sandbox_allow` (the run's --sandbox-allow) is added to the options of scorers that run model code."""
    name = spec.scorer
    if name not in SCORERS:
        raise SafeevalError(
            f"Task {spec.name} ({spec.path}) names scorer '{name}'. Known scorers: {', '.join(SCORERS.names())}."
        )
    cls = SCORERS.get(name)
    options = dict(spec.data.get("scorer_options") or {})
    if sandbox_allow and getattr(cls, "sandboxed", False):
        own = options.get("sandbox_allow") or []
        options["sandbox_allow"] = sorted({*([own] if isinstance(own, str) else own), *sandbox_allow})
    return cls(name, options)
