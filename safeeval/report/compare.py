"""Methods against a reference, with paired tests: what `safeeval compare` prints and what the leaderboard and the
HTML report mark as significant. Pure functions over finished runs (their samples.jsonl); no model.

A comparison is made within a *stratum*: the runs that share the user's task and the scenario (an `sft` run on
SST-2, benign, is the reference for every other method on SST-2, benign). Within it, each method's seeds are
paired with the reference's (same seed, or the one reference run for all: the aligned model), prompts by id,
and each metric is one family: Holm's correction runs over the methods compared on it
(`significance.compare_runs`, `stats.compare_to_reference`).

Metrics tested: ASR (a judge's verdicts on harmful prompts), benign refusal (on benign prompts) and utility
(a scorer's per-sample score). A margin turns a "no worse than" claim into a TOST: shown, not shown, or
underpowered (the data cannot support the claim at that margin; an interval wholly past it is "not shown").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SafeevalError
from ..stats import Difference, Family
from .runs import Run, resolve_baseline
from .significance import compare_runs

# A block's metric key -> the kind of paired outcome it is tested on (significance.KINDS).
KIND_OF = {"asr": "safety", "benign_refusal_rate": "refusal", "accuracy": "utility"}
MARK = "*"  # a delta whose Holm-adjusted p is below alpha


@dataclass
class Comparison:
    stratum: str  # "sst2 · benign": what the compared runs share
    task: str
    evaluator: str
    key: str  # asr, benign_refusal_rate or accuracy
    family: Family
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        fam = self.family
        return {
            "stratum": self.stratum,
            "task": self.task,
            "evaluator": self.evaluator,
            "metric": self.key,
            "reference": fam.reference,
            "family": fam.statement,
            "alpha": fam.alpha,
            "worse": fam.worse,
            "differences": [_difference(d) for d in fam.differences],
            "notes": self.notes,
        }


def stratum(run: Run) -> str:
    return f"{run.trained_on} · {run.scenario}"


def tested_metrics(run: Run) -> list[tuple[str, str, str]]:
    """(task, judge or scorer, key) of every metric of a run that has a paired test and prompts to test it on (a
    task of benign prompts only has an ASR block with n = 0: it is tested on refusal alone)."""
    return [
        (task, name, key)
        for (task, name), block in run.metrics().items()
        for key in KIND_OF
        if isinstance(block.get(key), dict) and block[key].get("n")
    ]


def compare(
    runs: list[Run],
    against: str,
    *,
    margins: dict[str, float] | None = None,
    equivalence: bool = False,
    tasks: list[str] | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[Comparison]:
    """Every method against `against`: a method name (its runs in each stratum are that stratum's reference) or
    a run (a folder, or part of a label, as --baseline takes it: one reference for every stratum). margins:
    task -> margin in the metric's units (0.012 = 1.2 points), tested as non-inferiority (or equivalence)."""
    margins = margins or {}
    by_method = against in {r.method for r in runs}
    fixed = [] if by_method else resolve_baseline(runs, against, "--against")
    margin_kind = "equivalence" if equivalence else "non-inferiority"
    strata = _strata(runs, fixed)
    out = []
    for name, methods in strata.items():
        reference = methods.pop(against, []) if by_method else fixed
        if not reference or not methods:
            continue
        out += _compare_stratum(name, reference, methods, against, tasks, margins, margin_kind, alpha, seed)
    if not out:
        where = "method" if by_method else "run"
        raise SafeevalError(
            f"Nothing to compare against the {where} '{against}': no other method shares its "
            "user's task and scenario (or its runs have no tested metric); strata here: "
            + ", ".join(sorted(strata))
            + "."
        )
    unknown = sorted(set(margins) - {c.task for c in out})
    if unknown:
        raise SafeevalError(
            f"--margin names {', '.join(unknown)}, which no comparison has; tasks compared: "
            + ", ".join(sorted({c.task for c in out}))
            + "."
        )
    return out


def _strata(runs: list[Run], fixed: list[Run]) -> dict[str, dict[str, list[Run]]]:
    """stratum -> method -> runs, leaving out the fixed reference runs (matched by identity or folder)."""
    strata: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        if any(run is r for r in fixed) or (run.path is not None and any(run.path == r.path for r in fixed)):
            continue
        strata.setdefault(stratum(run), {}).setdefault(run.method, []).append(run)
    return strata


def _compare_stratum(
    name: str,
    reference: list[Run],
    methods: dict[str, list[Run]],
    against: str,
    tasks: list[str] | None,
    margins: dict[str, float],
    margin_kind: str,
    alpha: float,
    seed: int,
) -> list[Comparison]:
    """One Comparison per tested metric of the reference (those `tasks` names, if given) within one stratum."""
    out = []
    for task, evaluator, key in tested_metrics(reference[0]):
        if tasks and task not in tasks and f"{task}/{evaluator}" not in tasks:
            continue
        family, notes = compare_runs(
            reference,
            methods,
            task,
            evaluator,
            KIND_OF[key],
            alpha=alpha,
            margin=margins.get(task),
            margin_kind=margin_kind,
            seed=seed,
            skip=True,
        )
        if family is None:
            raise SafeevalError(
                f"{name}: no method could be paired with {against} on {task}/{evaluator}: "
                + notes[0].removeprefix("not tested: ")
                + "."
            )
        out.append(Comparison(name, task, evaluator, key, family, notes))
    return out


def significance(
    reference: list[Run], groups: dict[str, list[Run]], columns: list[tuple[str, str, str]], alpha: float = 0.05
) -> tuple[dict[tuple[str, tuple[str, str, str]], Difference], list[str]]:
    """For a leaderboard or report: each group's runs against the reference runs on each tested column
    (task, evaluator, key); one family per column, over the groups. Returns (group label, column) ->
    Difference, and notes on what could not be tested (runs without samples, seeds without a reference)."""
    found, notes = {}, []
    for column in columns:
        task, evaluator, key = column
        if key not in KIND_OF:
            continue
        try:
            family, said = compare_runs(reference, groups, task, evaluator, KIND_OF[key], alpha=alpha, skip=True)
        except SafeevalError as exc:  # the reference runs themselves cannot serve (e.g. they repeat a seed)
            notes.append(f"{task}/{evaluator}: {exc}")
            continue
        notes += [f"{task}/{evaluator}: {n.removeprefix('not tested: ')}" for n in said if n.startswith("not tested")]
        for diff in family.differences if family else []:
            found[(diff.name, column)] = diff
    return found, notes


def margin_text(diff: Difference) -> str:
    """The TOST verdict in a few words: "shown (1.2 pt)", "not shown (1.2 pt)", "underpowered (1.2 pt, ~900
    pairs needed)"; the interval and p-value are in the JSON."""
    m = diff.margin
    if m is None:
        return "-"
    return f"{m.result} ({100 * m.margin:g} pt" + (f", ~{m.pairs_needed} pairs needed)" if m.pairs_needed else ")")


def headers(comparison: Comparison) -> list[tuple[str, str]]:
    with_margin = any(d.margin is not None for d in comparison.family.differences)
    return HEADERS + (
        [(f"no worse by\n(TOST, {comparison.family.differences[0].margin.kind})", "left")] if with_margin else []
    )


def rows(comparison: Comparison) -> list[list[str]]:
    """One text row per method: pairs, reference and method values, Δ [95% CI], CMH p, Holm p, verdicts."""
    with_margin = any(d.margin is not None for d in comparison.family.differences)
    out = []
    for d in comparison.family.differences:
        seeds = len(d.per_seed)
        row = [
            d.name,
            str(d.n_pairs),
            f"{100 * d.reference:.1f}",
            f"{100 * d.other:.1f}",
            f"{100 * d.difference:+.1f} [{100 * d.ci_low:+.1f}, {100 * d.ci_high:+.1f}]",
            _p(d.test.p_value),
            _p(d.p_holm),
            ("yes " + MARK) if d.significant else "no",
            f"{seeds}" + (" (disagree)" if d.seeds_disagree else ""),
        ]
        out.append(row + ([margin_text(d)] if with_margin else []))
    return out


HEADERS = [
    ("method", "left"),
    ("pairs", "right"),
    ("ref %", "right"),
    ("method %", "right"),
    ("Δ pp [95% CI]", "right"),
    ("p", "right"),
    ("Holm p", "right"),
    ("signif.", "left"),
    ("seeds", "right"),
]


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _difference(d: Difference) -> dict:
    out = {
        "method": d.name,
        "n_pairs": d.n_pairs,
        "reference": d.reference,
        "value": d.other,
        "difference": d.difference,
        "ci_low": d.ci_low,
        "ci_high": d.ci_high,
        "p": d.test.p_value,
        "test": f"stratified CMH ({d.test.method})",
        "p_holm": d.p_holm,
        "significant": d.significant,
        "seeds": len(d.per_seed),
        "seeds_disagree": d.seeds_disagree,
        "per_seed": d.per_seed,
    }
    if d.margin is not None:
        m = d.margin
        out["margin"] = {
            "margin": m.margin,
            "kind": m.kind,
            "result": m.result,
            "ci_low": m.ci_low,
            "ci_high": m.ci_high,
            "p": m.p_value,
            "pairs_needed": m.pairs_needed,
            "reason": m.reason,
        }
    return out
