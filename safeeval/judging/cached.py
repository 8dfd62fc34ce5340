"""Judging through the store: verdicts the store holds are reused, the rest are judged and saved."""

from __future__ import annotations

from ..data import Sample
from ..generation import missing
from ..keys import judgment_key
from ..progress import Reporter, silent
from ..store import Store
from .base import Judge, Verdict


def judge_cached(
    judge: Judge,
    store: Store,
    samples: list[Sample],
    responses: list[str],
    gen_keys: list[str],
    reporter: Reporter = silent,
    batch: int = 512,
) -> tuple[list[dict], int]:
    """Judge what the store lacks; a sample that needs another judge is recorded as not judged."""
    j_keys = [judgment_key(judge.fingerprint, g, s) for g, s in zip(gen_keys, samples)]
    pending = missing(j_keys, store.get_judgments(j_keys))
    with reporter(f"judging ({judge.name})", len(pending)) as advance:
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            todo = [i for i in chunk if not (samples[i].needs_judge and samples[i].needs_judge != judge.kind)]
            found = (
                dict(zip(todo, judge.judge([samples[i] for i in todo], [responses[i] for i in todo]))) if todo else {}
            )
            rows = []
            for i in chunk:
                verdict = found.get(i) or Verdict(
                    None, status="not_judged", note=f"needs the {samples[i].needs_judge} judge"
                )
                rows.append(
                    {
                        "key": j_keys[i],
                        "judge": judge.fingerprint,
                        "generation": gen_keys[i],
                        "verdict": verdict.as_dict(),
                    }
                )
            store.put_judgments(rows)
            advance(len(chunk))
    got = store.get_judgments(j_keys)
    return [got[k] for k in j_keys], len(pending)
