"""Bootstrap confidence intervals over prompts, for single runs and for paired differences between runs.

Every summary in mheval is a ratio of sums over prompts, sum(value·weight) / sum(weight): weight 1 gives the mean
of per-clip values, weight = reference words gives corpus-level WER. Resampling whole prompts (all clips of an
item together) keeps seeds of one prompt from counting as independent evidence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95


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


def _clean(groups, values, weights):
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    groups = np.asarray(groups)
    keep = np.isfinite(values) & np.isfinite(weights)
    return groups[keep], values[keep], weights[keep]


def bootstrap(groups, values, weights=None, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """Ratio-of-sums estimate with a percentile bootstrap interval over prompts (`groups`)."""
    groups, values, weights = _clean(groups, values, weights)
    if len(values) == 0 or weights.sum() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    numerators, denominators = _per_prompt_sums(groups, values, weights)
    value = numerators.sum() / denominators.sum()
    if len(numerators) < 2:
        return Estimate(float(value), float("nan"), float("nan"), len(numerators))
    index = _resample_indices(len(numerators), resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = numerators[index].sum(axis=1) / denominators[index].sum(axis=1)
    return Estimate(float(value), *_interval(samples), len(numerators))


def paired_bootstrap(groups_a, values_a, weights_a, groups_b, values_b, weights_b,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
    """Difference B − A of ratio-of-sums estimates, resampling the prompts both runs share, together."""
    ga, va, wa = _clean(groups_a, values_a, weights_a)
    gb, vb, wb = _clean(groups_b, values_b, weights_b)
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
    groups, values, _ = _clean(groups, values, None)
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
