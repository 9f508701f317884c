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
    value: float
    low: float
    high: float
    n: int  # prompts


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
    prompts resampled within their stratum."""
    groups, values, weights, strata = _clean(groups, values, weights, strata)
    if len(values) == 0 or weights.sum() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    labels, index = np.unique(strata, return_inverse=True)
    sums = [_per_prompt_sums(groups[index == s], values[index == s], weights[index == s])
            for s in range(len(labels))]
    sums = [(num, den) for num, den in sums if den.sum() > 0]
    value = np.mean([num.sum() / den.sum() for num, den in sums])
    prompts = sum(len(num) for num, _ in sums)
    if prompts < 2:
        return Estimate(float(value), float("nan"), float("nan"), prompts)
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_stratum = []
        for num, den in sums:
            drawn = rng.integers(0, len(num), size=(resamples, len(num)))
            per_stratum.append(num[drawn].sum(axis=1) / den[drawn].sum(axis=1))
    return Estimate(float(value), *_interval(np.mean(per_stratum, axis=0)), prompts)


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
        return Estimate(float(value), float("nan"), float("nan"), len(shared))
    index = _resample_indices(len(shared), resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = num_b[index].sum(1) / den_b[index].sum(1) - num_a[index].sum(1) / den_a[index].sum(1)
    return Estimate(float(value), *_interval(samples), len(shared))


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
        return Estimate(value, float("nan"), float("nan"), len(prompts))
    draws = _resample_indices(len(prompts), resamples, seed)
    samples = np.array([np.median(np.concatenate([prompts[k] for k in draw])) for draw in draws])
    return Estimate(value, *_interval(samples), len(prompts))


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
