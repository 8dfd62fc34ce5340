"""SST-2 from a chat answer: the first label word it says. Neither word: no answer, counted wrong."""

from __future__ import annotations

import re

from ..data import Sample
from ..judging.base import Verdict
from . import Scorer

_LABEL = re.compile(r"\b(positive|negative)\b", re.IGNORECASE)


class SST2Scorer(Scorer):
    def score_one(self, sample: Sample, response: str) -> Verdict:
        found = _LABEL.search(response)
        if not found:
            return Verdict(None, status="unparsed", note="no label word")
        answer = found.group(1).lower()
        return Verdict(None, score=float(answer == sample.target), note=answer)
