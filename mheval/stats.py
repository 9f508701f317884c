"""Bootstrap confidence intervals over prompts, for single runs and for paired differences between runs.

Every summary in mheval is a ratio of sums over prompts, sum(value·weight) / sum(weight): weight 1 gives the mean
of per-clip values, weight = reference words gives corpus-level WER. Resampling whole prompts (all clips of an
item together) keeps seeds of one prompt from counting as independent evidence. Given strata (each prompt's
language), the summary is the unweighted mean of the strata's ratios (a macro-average: each language counts once,
whatever its unit or number of prompts), and prompts are resampled within their stratum.

Written by hand (numpy) rather than with scipy.stats.bootstrap, which resamples observations, not ratio-of-sums
clusters with weights, strata and the pairing `paired_bootstrap` needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
MIN_PROMPTS = 5  # below this many prompts a bootstrap interval is little more than the min–max range: flagged


@dataclass(frozen=True)
class Estimate:
    """A summary with its 95% interval over `n` prompts. `too_few`: fewer than `MIN_PROMPTS` prompts in all or in
    one of the strata it averages over: the interval is then little more than the range of a few prompts (a stratum
    of one prompt adds no variance at all, so its interval can be zero-wide), and a reader must mark it or print
    "too few" rather than show it as certain."""

    value: float
    low: float
    high: float
    n: int  # prompts
    too_few: bool = False


def _per_prompt_sums(groups: np.ndarray, values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, index = np.unique(groups, return_inverse=True)
    numerators = np.bincount(index, weights=values * weights)
    denominators = np.bincount(index, weights=weights)
    return numerators, denominators


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return float("nan"), float("nan")
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _clean(groups, values, weights, strata=None):
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    groups = np.asarray(groups)
    strata = np.zeros(len(values), dtype=int) if strata is None else np.asarray(strata)
    keep = np.isfinite(values) & np.isfinite(weights)
    return groups[keep], values[keep], weights[keep], strata[keep]


def bootstrap(groups, values, weights=None, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
              strata=None) -> Estimate:
    """Ratio-of-sums estimate with a percentile bootstrap interval over prompts (`groups`). With `strata` (one label
    per value, the same for all values of a prompt): the mean over strata of each stratum's ratio of sums, with
    prompts resampled within their stratum. `too_few` when the total or any stratum has fewer than `MIN_PROMPTS`
    prompts."""
    groups, values, weights, strata = _clean(groups, values, weights, strata)
    if len(values) == 0 or weights.sum() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    labels, index = np.unique(strata, return_inverse=True)
    sums = [_per_prompt_sums(groups[index == s], values[index == s], weights[index == s])
            for s in range(len(labels))]
    sums = [(num, den) for num, den in sums if den.sum() > 0]
    value = np.mean([num.sum() / den.sum() for num, den in sums])
    prompts = sum(len(num) for num, _ in sums)
    too_few = min(len(num) for num, _ in sums) < MIN_PROMPTS   # the total or any one stratum
    if prompts < 2:
        return Estimate(float(value), float("nan"), float("nan"), prompts, too_few)
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_stratum = []
        for num, den in sums:
            drawn = rng.integers(0, len(num), size=(resamples, len(num)))
            per_stratum.append(num[drawn].sum(axis=1) / den[drawn].sum(axis=1))
    return Estimate(float(value), *_interval(np.mean(per_stratum, axis=0)), prompts, too_few)


def paired_bootstrap(groups_a, values_a, weights_a, groups_b, values_b, weights_b,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """Difference B − A of ratio-of-sums estimates, resampling the prompts both runs share, together."""
    ga, va, wa, _ = _clean(groups_a, values_a, weights_a)
    gb, vb, wb, _ = _clean(groups_b, values_b, weights_b)
    shared = np.intersect1d(ga, gb)
    if len(shared) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    num_a, den_a = _per_prompt_sums(*_restrict(shared, ga, va, wa))
    num_b, den_b = _per_prompt_sums(*_restrict(shared, gb, vb, wb))
    value = num_b.sum() / den_b.sum() - num_a.sum() / den_a.sum()
    if len(shared) < 2:
        return Estimate(float(value), float("nan"), float("nan"), len(shared), True)
    index = _resample_indices(len(shared), resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = num_b[index].sum(1) / den_b[index].sum(1) - num_a[index].sum(1) / den_a[index].sum(1)
    return Estimate(float(value), *_interval(samples), len(shared), len(shared) < MIN_PROMPTS)


def _restrict(shared, groups, values, weights):
    keep = np.isin(groups, shared)
    return groups[keep], values[keep], weights[keep]


def bootstrap_median(groups, values, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """Median of the clips' values with a percentile bootstrap interval that resamples whole prompts (`groups`):
    for a signed quantity whose mean a few wild clips would drag (sync offsets)."""
    groups, values, _, _ = _clean(groups, values, None)
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    _, index = np.unique(groups, return_inverse=True)
    prompts = [values[index == k] for k in range(index.max() + 1)]
    value = float(np.median(values))
    if len(prompts) < 2:
        return Estimate(value, float("nan"), float("nan"), len(prompts), True)
    draws = _resample_indices(len(prompts), resamples, seed)
    samples = np.array([np.median(np.concatenate([prompts[k] for k in draw])) for draw in draws])
    return Estimate(value, *_interval(samples), len(prompts), len(prompts) < MIN_PROMPTS)


ADJUSTMENTS = {"holm": "Holm (family-wise error rate)", "fdr_bh": "Benjamini–Hochberg (false discovery rate)"}


def adjust_p_values(p_values, method: str = "holm") -> np.ndarray:
    """p-values adjusted over the whole family of comparisons a command reports (statsmodels' `multipletests`):
    `holm` controls the family-wise error rate, `fdr_bh` the false discovery rate. NaN (not tested) stays NaN and
    does not count as a member of the family."""
    from statsmodels.stats.multitest import multipletests

    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown p-value adjustment {method!r}; one of {', '.join(ADJUSTMENTS)}")
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p_values, np.nan)
    tested = np.isfinite(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], method=method)[1]
    return adjusted


@dataclass(frozen=True)
class PairedTest:
    """A − B of a ratio-of-sums summary on the prompts both sides share: the difference, its paired bootstrap 95%
    interval, a two-sided paired permutation p-value, and the bootstrap standard error (for power)."""

    delta: float
    low: float
    high: float
    p: float
    standard_error: float
    n: int  # shared prompts


PERMUTATIONS = 20_000      # random sign flips when there are too many prompts to enumerate them all
EXACT_PROMPTS = 16         # up to this many prompts every one of the 2^n sign flips is enumerated: an exact p
PERMUTATION_CHUNK = 20_000


def paired_test(groups, values_a, weights_a, values_b, weights_b, strata=None, resamples: int = DEFAULT_RESAMPLES,
                permutations: int = PERMUTATIONS, seed: int = 0) -> PairedTest:
    """A − B of sum(value·weight) / sum(weight) over paired prompts: one row per prompt (`groups`, unique), with
    both sides' value and weight. With `strata` (each prompt's language) both summaries are macro-averages over
    strata, resampled within each stratum.

    The interval is a percentile bootstrap that resamples prompts (both sides together, so what the prompts share
    cancels). The p-value is a sign-flip permutation test: under "no difference" each prompt's A and B are
    exchangeable, so swapping them per prompt draws the null distribution of the difference; p is the share of
    swaps whose difference is at least as far from 0 as the observed one. Up to `EXACT_PROMPTS` prompts every swap
    pattern is enumerated (an exact p: with 5 prompts it cannot go below 1/16, which is the honest answer);
    beyond, `permutations` random patterns, counting the observed one (so p > 0).
    Written by hand: neither scipy.stats.permutation_test nor bootstrap resamples ratio-of-sums clusters with
    weights, strata and pairing together."""
    groups = np.asarray(groups)
    if len(np.unique(groups)) != len(groups):
        raise ValueError("paired_test takes one row per prompt")
    arrays = [np.asarray(x, dtype=float) for x in (values_a, weights_a, values_b, weights_b)]
    strata = np.zeros(len(groups), dtype=int) if strata is None else np.asarray(strata)
    keep = np.all([np.isfinite(x) for x in arrays], axis=0) & (arrays[1] > 0) & (arrays[3] > 0)
    va, wa, vb, wb = (x[keep] for x in arrays)
    n = int(keep.sum())
    if n == 0:
        return PairedTest(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0)
    num_a, num_b = va * wa, vb * wb
    _, stratum = np.unique(strata[keep], return_inverse=True)
    members = [np.flatnonzero(stratum == s) for s in range(int(stratum.max()) + 1)]

    def difference(na, da, nb, db):   # [..., n] per-prompt sums → [...] macro difference over strata
        return np.mean([na[..., m].sum(-1) / da[..., m].sum(-1) - nb[..., m].sum(-1) / db[..., m].sum(-1)
                        for m in members], axis=0)

    def swapped(swap):   # the difference with A and B exchanged on the prompts where `swap` is set
        return difference(np.where(swap, num_b, num_a), np.where(swap, wb, wa),
                          np.where(swap, num_a, num_b), np.where(swap, wa, wb))

    delta = float(difference(num_a, wa, num_b, wb))
    if n < 2:
        return PairedTest(delta, float("nan"), float("nan"), float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    drawn = np.empty((resamples, n), dtype=int)
    for mine in members:   # resample prompts within their stratum
        drawn[:, mine] = mine[rng.integers(0, len(mine), size=(resamples, len(mine)))]
    tolerance = 1e-12 * max(1.0, abs(delta))
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = difference(num_a[drawn], wa[drawn], num_b[drawn], wb[drawn])
        if n <= EXACT_PROMPTS:
            patterns = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
            p = float(np.mean(np.abs(swapped(patterns.astype(bool))) >= abs(delta) - tolerance))
        else:
            extreme = 0
            for start in range(0, permutations, PERMUTATION_CHUNK):
                swap = rng.random((min(PERMUTATION_CHUNK, permutations - start), n)) < 0.5
                extreme += int(np.sum(np.abs(swapped(swap)) >= abs(delta) - tolerance))
            p = (1 + extreme) / (1 + permutations)
    low, high = _interval(samples)
    finite = samples[np.isfinite(samples)]
    return PairedTest(delta, low, high, p, float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"), n)


def prompts_for_power(delta: float, standard_error: float, n: int, power: float = 0.8,
                      alpha: float = 0.05) -> float:
    """How many paired prompts a two-sided paired t-test at `alpha` needs to detect `delta` with `power`, from the
    per-prompt spread implied by the bootstrap standard error of n prompts (statsmodels' TTestPower). inf when the
    observed difference is 0; NaN when the spread is unknown."""
    from statsmodels.stats.power import TTestPower

    spread = standard_error * np.sqrt(n)
    if not np.isfinite(spread) or not np.isfinite(delta) or n < 2:
        return float("nan")
    if delta == 0 or spread <= 1e-9 * abs(delta):   # a spread at rounding level is none: every prompt agrees
        return float("inf") if delta == 0 else float(n)
    effect = abs(delta) / spread

    from scipy.stats import nct, norm, t

    def enough(prompts: int) -> bool:   # the power is monotone in the number of prompts: search it
        achieved = TTestPower().power(effect_size=effect, nobs=prompts, alpha=alpha, alternative="two-sided")
        if np.isnan(achieved):
            # statsmodels adds the far tail, which scipy's noncentral t returns as NaN when it underflows (large
            # effects, few prompts): that tail is 0 there, so the power is the near tail's
            achieved = nct.sf(t.isf(alpha / 2, prompts - 1), prompts - 1, effect * np.sqrt(prompts))
        return achieved >= power

    # start from the normal approximation, then step to the smallest n the t-test's power admits
    high = max(2, int(np.ceil(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / effect) ** 2)))
    if high > 10 ** 7:
        return float("inf")
    low = high
    if enough(high):      # bracket: `low` not enough (or 1), `high` enough
        while low > 1 and enough(low):
            high, low = low, min(low - 1, int(low * 0.9))
    else:
        while not enough(high):
            if high > 10 ** 7:
                return float("inf")
            low, high = high, int(high * 1.1) + 1
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(max(high, 2))
