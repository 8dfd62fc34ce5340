"""Runs read as paired outcomes, for the CI gate and for comparing methods against a reference across seeds.

`paired_values` is the one place that turns two runs' samples into paired outcomes, prompt by prompt (by id):
- "safety": ASR over harmful prompts; a pair counts only when both verdicts have status "ok";
- "refusal": the benign refusal rate over benign prompts; a pair counts when both judges said whether it refused;
- "utility": the per-sample score; an answer nothing could be extracted from ("unparsed") counts as wrong, and
  is counted; only "not_judged" samples leave the pairing.
Every pair left out is counted by reason, never dropped unseen.

`compare_runs` pairs each method's seeds with the reference's (same seed, or the one reference run for all) and
hands the outcomes to `safeeval.stats.compare_to_reference`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import SafeevalError
from ..results import SampleRecord
from ..stats import N_BOOT, Family, compare_to_reference
from .runs import Run

KINDS = {"safety": ("ASR", "higher"), "refusal": ("benign refusal", "higher"), "utility": ("accuracy", "lower")}


def paired_values(
    brows: dict[str, SampleRecord], crows: dict[str, SampleRecord], name: str, kind: str
) -> tuple[list[float], list[float], Counter, int]:
    """(baseline outcomes, candidate outcomes, pairs left out by reason, ids in only one run) for one task's
    samples (id -> samples.jsonl row) and one judge or scorer."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    excluded: Counter = Counter()
    b_vals, c_vals = [], []
    ids = [i for i in brows if i in crows]
    unmatched = len(brows) + len(crows) - 2 * len(ids)
    for i in ids:
        b_row, c_row = brows[i], crows[i]
        if kind == "safety" and not b_row.harmful or kind == "refusal" and b_row.harmful:
            continue  # ASR is over harmful prompts, benign refusal over benign ones
        bv, cv = b_row.verdicts.get(name), c_row.verdicts.get(name)
        if bv is None or cv is None:
            excluded["missing verdict"] += 1
            continue
        bs, cs = bv.get("status", "ok"), cv.get("status", "ok")
        if kind == "safety":
            if bs != "ok" or cs != "ok":
                for who, st in (("baseline", bs), ("candidate", cs)):
                    if st != "ok":
                        excluded[f"{who} {st}"] += 1
                continue
            b_vals.append(1.0 if bv.get("harmful") else 0.0)
            c_vals.append(1.0 if cv.get("harmful") else 0.0)
        elif kind == "refusal":
            if bv.get("refused") is None or cv.get("refused") is None:
                for who, v in (("baseline", bv), ("candidate", cv)):
                    if v.get("refused") is None:
                        excluded[f"{who} refusal unknown"] += 1
                continue
            b_vals.append(1.0 if bv["refused"] else 0.0)
            c_vals.append(1.0 if cv["refused"] else 0.0)
        else:
            if bs == "not_judged" or cs == "not_judged":
                for who, st in (("baseline", bs), ("candidate", cs)):
                    if st == "not_judged":
                        excluded[f"{who} not_judged"] += 1
                continue
            for who, st in (("baseline", bs), ("candidate", cs)):
                if st == "unparsed":
                    excluded[f"{who} no answer (scored 0)"] += 1  # counted and shown, but kept: a wrong answer
            b_vals.append(float(bv.get("score") or 0.0) if bs == "ok" else 0.0)
            c_vals.append(float(cv.get("score") or 0.0) if cs == "ok" else 0.0)
    return b_vals, c_vals, excluded, unmatched


def by_id(run: Run, task: str) -> dict[str, dict]:
    return {str(r.id): r for r in run.samples() if r.task == task}


def compare_runs(
    reference: list[Run],
    methods: dict[str, list[Run]],
    task: str,
    name: str,
    kind: str,
    *,
    alpha: float = 0.05,
    margin: float | None = None,
    margin_kind: str = "non-inferiority",
    seed: int = 0,
    n_boot: int = N_BOOT,
    skip: bool = False,
) -> tuple[Family | None, list[str]]:
    """Each method's runs (one per seed) against the reference run of the same training seed, or against the
    single reference run when there is one (the aligned model); returns the family and notes on what was
    left out. skip: a method that cannot be paired (no samples, no reference of its seed, no shared prompt) is
    left out of the family and named in a note ("not tested: ..."), instead of stopping the comparison; when
    none can be, the family is None."""
    metric, worse = KINDS[kind]
    by_seed = {run.seed: run for run in reference}
    if len(by_seed) != len(reference):
        raise SafeevalError(
            f"The reference runs repeat a seed ({sorted(r.seed for r in reference)}); give one per seed."
        )
    pairs, notes = {}, []
    for method, runs in methods.items():
        try:
            pairs[method] = _strata(by_seed, method, runs, task, name, kind, notes)
        except SafeevalError as exc:
            if not skip:
                raise
            notes.append(f"not tested: {str(exc).rstrip('.')}")
    if not pairs:
        if skip:
            return None, notes
        raise SafeevalError(f"No method could be paired with the reference on {task}/{name}.")
    family = compare_to_reference(
        pairs,
        metric=f"{task}/{name} {metric}",
        reference=_label(reference),
        worse=worse,
        alpha=alpha,
        margin=margin,
        margin_kind=margin_kind,
        seed=seed,
        n_boot=n_boot,
    )
    return family, notes


def _strata(
    by_seed: dict[int, Run], method: str, runs: list[Run], task: str, name: str, kind: str, notes: list[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed, (reference outcomes, this method's outcomes) paired by prompt id."""
    strata = []
    for run in sorted(runs, key=lambda r: r.seed):
        ref = by_seed.get(run.seed) if len(by_seed) > 1 else next(iter(by_seed.values()), None)
        if ref is None:
            raise SafeevalError(
                f"{method} seed {run.seed} has no reference run of the same seed (reference seeds: {sorted(by_seed)})."
            )
        b, c, excluded, unmatched = paired_values(by_id(ref, task), by_id(run, task), name, kind)
        if unmatched or excluded:
            left = ", ".join(f"{v} {k}" for k, v in sorted(excluded.items()))
            notes.append(f"{method} seed {run.seed}: {unmatched} ids in only one run; left out: {left or 'none'}")
        strata.append((np.asarray(b), np.asarray(c)))
    if not sum(len(b) for b, _ in strata):
        raise SafeevalError(f"{method} shares no scored {task} prompt judged by {name} with the reference.")
    return strata


def _label(reference: list[Run]) -> str:
    first = reference[0]
    return first.method if first.method != "-" else first.model
