import numpy as np
import pytest

from mheval.stats import bootstrap, paired_bootstrap, prompts_for_power


def test_mean_and_interval_cover_the_value():
    rng = np.random.default_rng(1)
    values = rng.normal(0.3, 0.1, 200)
    result = bootstrap(np.arange(200), values)
    assert result.value == pytest.approx(values.mean())
    assert result.low < result.value < result.high
    # the percentile interval of a mean of 200 draws with sd 0.1 is about ±1.96·0.1/√200 ≈ ±0.014
    assert result.high - result.low == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(200), rel=0.25)
    assert result.n == 200


def test_weights_give_corpus_ratio_not_mean_of_ratios():
    # two utterances: 1 error in 10 words and 1 error in 2 words
    rates, words = np.array([0.1, 0.5]), np.array([10.0, 2.0])
    result = bootstrap(["a", "b"], rates, words)
    assert result.value == pytest.approx(2 / 12)
    assert bootstrap(["a", "b"], rates).value == pytest.approx(0.3)


def test_clips_of_one_prompt_are_resampled_together():
    groups = ["a"] * 3 + ["b"] * 3
    result = bootstrap(groups, [1, 1, 1, 0, 0, 0])
    assert result.n == 2
    assert result.low == 0.0 and result.high == 1.0


def test_constant_values_have_zero_width_and_nan_is_ignored():
    result = bootstrap(list("abcd"), [0.2, 0.2, np.nan, 0.2])
    assert (result.value, result.low, result.high, result.n) == (pytest.approx(0.2),) * 3 + (3,)


def test_empty_and_single_prompt():
    assert bootstrap([], []).n == 0
    single = bootstrap(["a"], [0.5])
    assert single.value == 0.5 and np.isnan(single.low)


def test_paired_difference_uses_shared_prompts_and_detects_a_shift():
    ids = np.arange(50)
    base = np.random.default_rng(2).uniform(0, 0.4, 50)
    same = paired_bootstrap(ids, base, None, ids, base, None)
    assert same.value == 0 and same.low == 0 and same.high == 0
    worse = paired_bootstrap(ids, base, None, ids[:40], base[:40] + 0.1, None)
    assert worse.n == 40
    assert worse.value == pytest.approx(0.1)  # only the 40 shared prompts are compared
    assert worse.low > 0.05


def test_strata_give_the_mean_over_strata_and_resample_within_each():
    """Issue 12 item 8: the "all" row averages languages (each counts once) and keeps each language's prompt count
    in every resample, so constant per-language values give a zero-width interval."""
    groups = [f"en-{i}" for i in range(20)] + [f"ja-{i}" for i in range(5)]
    languages = ["en"] * 20 + ["ja"] * 5
    values, weights = [0.1] * 20 + [0.5] * 5, [10.0] * 20 + [25.0] * 5
    macro = bootstrap(groups, values, weights, strata=languages)
    assert (macro.value, macro.low, macro.high, macro.n) == (pytest.approx(0.3), pytest.approx(0.3),
                                                            pytest.approx(0.3), 25)
    pooled = bootstrap(groups, values, weights)  # Japanese's 125 characters outweigh English's 200 words
    assert pooled.value == pytest.approx((20 + 62.5) / 325) and pooled.high - pooled.low > 0.05


def test_a_stratum_with_one_prompt_is_flagged_and_its_zero_width_interval_never_passes_as_certain():
    """Issue 20 item 6: 7 languages × 1 prompt each: resampling within a stratum of one prompt adds no variance,
    so the macro interval is zero-wide whatever the values; the estimate says so."""
    languages = ["en", "de", "fr", "es", "it", "ja", "zh"]
    values = np.random.default_rng(3).uniform(0, 1, len(languages))
    thin = bootstrap([f"{language}-0" for language in languages], values, strata=languages)
    assert thin.n == 7 and thin.high - thin.low == pytest.approx(0) and thin.too_few
    wide = [f"{language}-{k}" for language in languages for k in range(5)]
    enough = bootstrap(wide, np.random.default_rng(4).uniform(0, 1, len(wide)), strata=[g[:2] for g in wide])
    assert not enough.too_few and enough.high - enough.low > 0.05
    assert bootstrap(list("abcd"), [0.1, 0.2, 0.3, 0.4]).too_few and not bootstrap(list("abcde"), [0.1] * 5).too_few


@pytest.mark.parametrize("effect", [0.2, 0.5, 1.0])
def test_prompts_for_power_is_the_smallest_n_the_paired_t_test_needs(effect):
    from statsmodels.stats.power import TTestPower

    n = 40   # the spread of one prompt's difference is standard_error * sqrt(n) = 1, so the effect is delta
    needed = int(prompts_for_power(effect, 1 / np.sqrt(n), n))
    power = TTestPower().power
    assert power(effect_size=effect, nobs=needed, alpha=0.05, alternative="two-sided") >= 0.8
    assert power(effect_size=effect, nobs=needed - 1, alpha=0.05, alternative="two-sided") < 0.8


@pytest.mark.parametrize("effect", [5.0, 10.0, 30.0])
def test_prompts_for_power_of_a_large_difference_is_a_few_prompts_not_an_error(effect):
    # statsmodels' power is NaN for these effects at 3+ prompts (the noncentral t's far tail underflows)
    needed = prompts_for_power(effect, 0.1, 100)
    assert needed in (2.0, 3.0)


def test_prompts_for_power_of_no_difference_is_infinite_and_of_an_unknown_spread_nan():
    assert prompts_for_power(0.0, 0.1, 20) == float("inf")
    assert np.isnan(prompts_for_power(0.5, float("nan"), 20))


def test_prompts_for_power_of_a_difference_every_prompt_shares_is_the_prompts_at_hand():
    # the bootstrap's standard error of identical per-prompt differences is rounding noise, not a spread
    assert prompts_for_power(-1.95, 6.7e-16, 7) == 7.0
