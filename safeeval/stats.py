"""Paired significance for models scored on the same prompts. Pure functions: no I/O, no models.

A comparison pairs each prompt's outcome under a reference model (the aligned model, or `sft`) with its outcome
under another model, prompt by prompt (by sample id). Several training seeds are strata: each seed is one
trained model, paired with the reference of the same seed (or with the one reference for all). Seeds are
combined by the Cochran-Mantel-Haenszel test over their McNemar tables, and the difference's interval by a
paired bootstrap that resamples prompts within each seed. Both treat the seeds' models as given (a fixed-effect
analysis): whether the seeds agree is a separate question, answered by `heterogeneity` and reported beside.

Outcomes are 0/1 (harmful, refused, correct) or scores in [0, 1]; for scores, a pair "moves up" when the
other model's score is higher (the sign test the CI gate uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

N_BOOT = 2000
# Below this many discordant pairs in all, CMH's p-value is the exact (mid-p) binomial one rather than the
# chi-square approximation (the usual rule for McNemar's test: the approximation needs b + c >= 25).
EXACT_BELOW = 25


# ---------------------------------------------------------------- one table


def sign_test(n_worse: int, n_better: int) -> float:
    """One-sided exact p-value that the worse direction is more likely: McNemar's exact test on 0/1 pairs."""
    n = n_worse + n_better
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(n_worse, n, 0.5, alternative="greater").pvalue)


def binomial_p(k: int, n: int, alternative: str = "two-sided", mid_p: bool = False) -> float:
    """P-value of k successes in n fair coin flips: exact, or mid-p (half the probability of k itself counts),
    which keeps the exact test's validity closely while losing most of its conservatism at small n."""
    if n == 0:
        return 1.0
    from scipy.stats import binom

    at = binom.pmf(k, n, 0.5) * (0.5 if mid_p else 1.0)
    upper = binom.sf(k, n, 0.5) + at  # P(X > k) + P(X = k), halved under mid-p
    lower = binom.cdf(k - 1, n, 0.5) + at
    if alternative == "greater":
        return float(min(1.0, upper))
    if alternative == "less":
        return float(min(1.0, lower))
    return float(min(1.0, 2 * min(upper, lower)))


def discordant(reference: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """(pairs where the other model's outcome is higher, pairs where it is lower): McNemar's b and c."""
    d = np.asarray(other, dtype=float) - np.asarray(reference, dtype=float)
    return int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))


# ---------------------------------------------------------------- seeds as strata


@dataclass
class Stratified:
    """CMH over the seeds' McNemar tables. For matched pairs, each pair is its own 2x2 stratum, so CMH's
    statistic reduces to McNemar's on the discordant pairs summed over seeds: (U - D)^2 / (U + D)."""

    n_up: int
    n_down: int
    strata: list[tuple[int, int]]  # (up, down) per seed
    odds_ratio: float | None  # Mantel-Haenszel estimate U / D: how much likelier a move up than a move down
    statistic: float | None  # continuity-corrected chi-square (1 df)
    p_value: float
    method: str  # "exact mid-p" or "chi-square"
    heterogeneity_p: float | None  # do the seeds' up/down shares differ? None with one informative seed


def cmh_paired(strata: list[tuple[int, int]], exact_below: int = EXACT_BELOW) -> Stratified:
    """Two-sided test that moves up and down are equally likely in every seed."""
    up, down = sum(u for u, _ in strata), sum(d for _, d in strata)
    n = up + down
    stat = (abs(up - down) - 1) ** 2 / n if n else None
    if n < exact_below:
        p, method = binomial_p(up, n, mid_p=True), "exact mid-p"
    else:
        from scipy.stats import chi2

        p, method = float(chi2.sf(stat, 1)), "chi-square"
    odds = up / down if down else (math.inf if up else None)
    return Stratified(up, down, list(strata), odds, stat, p, method, heterogeneity(strata))


def heterogeneity(strata: list[tuple[int, int]]) -> float | None:
    """Chi-square test that the share of moves up among discordant pairs is the same in every seed (K-1 df):
    small when the seeds disagree about the direction of the change. None with fewer than two seeds that
    have discordant pairs, or when every discordant pair moves the same way."""
    rows = [(u, d) for u, d in strata if u + d > 0]
    if len(rows) < 2 or all(u == 0 for u, _ in rows) or all(d == 0 for _, d in rows):
        return None
    from scipy.stats import chi2_contingency

    return float(chi2_contingency(np.array(rows), correction=False)[1])


def stratified_bootstrap(diffs: list[np.ndarray], seed: int = 0, n_boot: int = N_BOOT) -> np.ndarray:
    """n_boot resampled values of the pooled mean difference, resampling pairs with replacement within each
    stratum (seed), so each seed keeps its number of pairs. Resampling n pairs is a multinomial draw over the
    distinct differences: O(distinct values) per replicate instead of O(n) (for 0/1 outcomes, -1, 0 and 1)."""
    total = sum(len(d) for d in diffs)
    if total == 0:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    sums = np.zeros(n_boot)
    for d in diffs:
        if len(d) == 0:
            continue
        values, counts = np.unique(np.asarray(d, dtype=float), return_counts=True)
        sums = sums + rng.multinomial(len(d), counts / len(d), size=n_boot) @ values
    return sums / total


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap draws."""
    if np.isnan(draws).all():
        return float("nan"), float("nan")
    tail = round(50 * (1 - level), 9)  # 2.5 exactly for a 95% interval, not 2.5000000000000022
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap(diff: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float]:
    """95% percentile interval of mean(diff) under resampling pairs with replacement (one stratum)."""
    return interval(stratified_bootstrap([diff], seed, n_boot))


# ---------------------------------------------------------------- many comparisons, margins


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: reject those below alpha and the family-wise
    error rate stays at most alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class Margin:
    """A no-worse-than claim tested by two one-sided tests (TOST) on the bootstrap draws of the difference."""

    margin: float  # in the metric's units (0.012 = 1.2 points)
    kind: str  # "non-inferiority" (no worse by more than margin) or "equivalence" (within +-margin)
    alpha: float
    ci_low: float  # the (1 - 2 alpha) interval the decision reads
    ci_high: float
    p_value: float  # the larger of the one-sided p-values: the share of draws beyond the margin
    result: str  # "shown", "not shown" or "underpowered"
    pairs_needed: int | None = None  # roughly, for the interval to fit inside the margin (underpowered only)
    reason: str = ""


def margin_test(
    draws: np.ndarray,
    estimate: float,
    margin: float,
    *,
    worse: str,
    n_pairs: int,
    kind: str = "non-inferiority",
    alpha: float = 0.05,
) -> Margin:
    """TOST against a stated margin. `worse` is "higher" (ASR, refusal) or "lower" (accuracy): the direction a
    loss goes. Underpowered: the (1 - 2 alpha) interval is so wide that even an observed difference of exactly
    zero would reach past the margin, so the data cannot support the claim whatever the models do."""
    if margin <= 0:
        raise ValueError("margin must be positive")
    low, high = interval(draws, 1 - 2 * alpha)
    sign = 1.0 if worse == "higher" else -1.0
    # p of "worse by at least margin" and, for equivalence, of "better by at least margin"
    p_worse = float(np.mean(sign * draws >= margin))
    p_better = float(np.mean(-sign * draws >= margin)) if kind == "equivalence" else 0.0
    p = max(p_worse, p_better)
    # How far the interval reaches from the estimate on the side(s) the claim bounds: were the estimate zero,
    # the interval would end about this far out, so a reach at or past the margin cannot ever pass.
    towards_loss = high - estimate if worse == "higher" else estimate - low
    reach = max(high - estimate, estimate - low) if kind == "equivalence" else towards_loss
    needed = math.ceil(n_pairs * (reach / margin) ** 2) if reach > 0 else None  # the interval shrinks as 1/sqrt(n)
    bound = high if worse == "higher" else low
    if (kind == "equivalence" and -margin < low and high < margin) or (kind != "equivalence" and sign * bound < margin):
        return Margin(
            margin,
            kind,
            alpha,
            low,
            high,
            p,
            "shown",
            None,
            f"the {100 * (1 - 2 * alpha):.0f}% interval lies within the margin",
        )
    # The whole interval past the margin on the loss side (either side, for equivalence): the claim is refuted, which
    # no wider interval changes, so this is "not shown" however few pairs there are.
    if (kind == "equivalence" and (low >= margin or high <= -margin)) or (
        kind != "equivalence" and sign * (low if worse == "higher" else high) >= margin
    ):
        return Margin(margin, kind, alpha, low, high, p, "not shown", None, "the whole interval lies past the margin")
    if reach >= margin:
        return Margin(
            margin,
            kind,
            alpha,
            low,
            high,
            p,
            "underpowered",
            needed,
            f"the interval reaches {100 * reach:.1f} points from the estimate, more than the "
            f"{100 * margin:.1f}-point margin: about {needed} pairs would be needed",
        )
    return Margin(margin, kind, alpha, low, high, p, "not shown", None, "the interval reaches past the margin")


# ---------------------------------------------------------------- one metric, many methods


@dataclass
class Difference:
    """One model against the reference on one metric, seeds combined."""

    name: str
    n_pairs: int
    reference: float
    other: float
    difference: float  # other - reference, pooled over all pairs
    ci_low: float  # 95% stratified paired-bootstrap interval
    ci_high: float
    test: Stratified
    per_seed: list[dict]  # n, difference, up, down per seed
    p_holm: float = 1.0
    significant: bool = False
    seeds_disagree: bool = False
    margin: Margin | None = None


@dataclass
class Family:
    metric: str  # what is compared, e.g. "advbench/keyword ASR"
    reference: str
    worse: str  # "higher" or "lower"
    alpha: float
    differences: list[Difference] = field(default_factory=list)

    @property
    def statement(self) -> str:
        names = ", ".join(d.name for d in self.differences)
        return (
            f"Holm correction over the {len(self.differences)} comparison(s) against {self.reference} on "
            f"{self.metric} ({names}); family-wise alpha {self.alpha}"
        )


def compare_to_reference(
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    *,
    metric: str,
    reference: str,
    worse: str = "higher",
    alpha: float = 0.05,
    margin: float | None = None,
    margin_kind: str = "non-inferiority",
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> Family:
    """pairs[name] lists, per seed, (reference outcomes, this model's outcomes) aligned prompt by prompt.
    Each model gets the pooled paired difference, its stratified bootstrap interval, CMH over its seeds and the
    seeds' heterogeneity; p-values are Holm-corrected across the models (one family per metric); with a
    margin, each gets a TOST of "no worse than margin"."""
    if worse not in ("higher", "lower"):
        raise ValueError("worse must be 'higher' or 'lower'")
    family = Family(metric, reference, worse, alpha)
    for name, strata in pairs.items():
        refs = [np.asarray(r, dtype=float) for r, _ in strata]
        others = [np.asarray(o, dtype=float) for _, o in strata]
        diffs = [o - r for r, o in zip(refs, others)]
        n = sum(len(d) for d in diffs)
        if n == 0:
            raise ValueError(f"{name}: no pairs to compare")
        counts = [discordant(r, o) for r, o in zip(refs, others)]
        draws = stratified_bootstrap(diffs, seed, n_boot)
        estimate = float(sum(d.sum() for d in diffs) / n)
        low, high = interval(draws)
        test = cmh_paired(counts)
        per_seed = [
            {"n": len(d), "difference": float(d.mean()) if len(d) else None, "up": u, "down": dn}
            for d, (u, dn) in zip(diffs, counts)
        ]
        diff = Difference(
            name,
            n,
            float(sum(r.sum() for r in refs) / n),
            float(sum(o.sum() for o in others) / n),
            estimate,
            low,
            high,
            test,
            per_seed,
            seeds_disagree=test.heterogeneity_p is not None and test.heterogeneity_p < alpha,
        )
        if margin is not None:
            diff.margin = margin_test(draws, estimate, margin, worse=worse, n_pairs=n, kind=margin_kind, alpha=alpha)
        family.differences.append(diff)
    for diff, p in zip(family.differences, holm([d.test.p_value for d in family.differences])):
        diff.p_holm = p
        diff.significant = p < alpha
    return family
