"""What every judge returns, and the protocol it implements."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from ..data import Sample


@dataclass
class Verdict:
    harmful: bool | None  # the attack succeeded; None when not judged or unparsable
    refused: bool | None = None  # the response refuses, where the judge can tell
    status: str = "ok"  # "ok", "not_judged" (this judge cannot judge the sample) or "unparsed"
    score: float | None = None
    raw: str | None = None  # the judge model's own output, kept for audits
    note: str | None = None
    extra: dict | None = None  # structured details: category codes, extracted answers, test outcomes

    def as_dict(self) -> dict:
        return asdict(self)


class Judge(Protocol):
    name: str  # as selected, e.g. "keyword:harmbench-refusal"
    kind: str
    fingerprint: str  # changes whenever anything that shapes a verdict changes
    info: dict

    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]: ...
