"""The statistics of a pairwise study, on a votes table (`StudyStore.votes()` or a synthetic one of the same shape).

Maintained libraries wherever one does the job: Wilson intervals, the power calculation, Fleiss' κ and the Arena
logistic regression come from statsmodels, Krippendorff's α from `krippendorff`, the binomial test from scipy.
Davidson's tie model is fitted here (batched Newton) because no maintained package fits it.

A vote's `result` is read from the pair's first model ("a", in the study's model order): win, tie or loss, whatever
side that clip was shown on; `left_won` keeps the side for the bias test.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ALL = "all"
RESULTS = ("win", "tie", "loss")
ELO_BASE, ELO_SCALE, ELO_INITIAL = 10.0, 400.0, 1000.0   # Chatbot Arena's rating scale
ARENA_RESAMPLES = 100                                    # Arena's bootstrap
DAVIDSON_RESAMPLES = 1000
DIVERGED = 15.0   # |log-strength| at which a fit is diverging (a model that won or lost every decisive vote)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) without observations."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def outcomes(votes: pd.DataFrame) -> pd.DataFrame:
    """Votes with `result` (win / tie / loss for the pair's clip a), `left_won` (NaN for ties) and `matchup`."""
    votes = votes.copy()
    winner = np.where(votes.verdict == "left", votes.left_clip, np.where(votes.verdict == "right", votes.right_clip,
                                                                           None))
    votes["result"] = np.select([votes.verdict == "tie", winner == votes.clip_a], ["tie", "win"], "loss")
    votes["left_won"] = np.where(votes.verdict == "tie", np.nan, (votes.verdict == "left").astype(float))
    votes["matchup"] = votes.model_a + " vs " + votes.model_b
    return votes


def real(votes: pd.DataFrame) -> pd.DataFrame:
    """Votes on real pairs, first showings only (repeats measure the rater, they are not new evidence)."""
    return votes[(votes.kind == "real") & (votes.slot != "repeat")]


# -- win / tie / loss ----------------------------------------------------------------------------------------------------

def shares(votes: pd.DataFrame) -> pd.DataFrame:
    """Per criterion × matchup × language (and `all`): n, raters, win/tie/loss shares with Wilson 95% intervals."""
    rows = []
    for (criterion, matchup), group in votes.groupby(["criterion", "matchup"], sort=True):
        for language, by_language in [*group.groupby("language", sort=True), (ALL, group)]:
            row = {"criterion": criterion, "matchup": matchup, "language": language, "n": len(by_language),
                   "raters": by_language.rater_id.nunique(), "prompts": by_language.item_id.nunique()}
            for result in RESULTS:
                count = int((by_language.result == result).sum())
                row[result] = count / len(by_language)
                row[f"{result}_low"], row[f"{result}_high"] = wilson(count, len(by_language))
            rows.append(row)
    return pd.DataFrame(rows)


# -- Bradley–Terry -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairCounts:
    """Win/tie/loss counts per prompt and model pair, for fitting and for resampling prompts."""

    models: list[str]
    first: np.ndarray      # [P] model index of each pair's "a"
    second: np.ndarray     # [P]
    counts: np.ndarray     # [prompts, P, 3]: wins of a, ties, wins of b

    @classmethod
    def of(cls, votes: pd.DataFrame, models: list[str] | None = None) -> "PairCounts":
        models = models or sorted(set(votes.model_a) | set(votes.model_b))
        index = {model: i for i, model in enumerate(models)}
        keys = sorted({(index[a], index[b]) for a, b in zip(votes.model_a, votes.model_b)})
        pair_of = {key: p for p, key in enumerate(keys)}
        prompts = {item: i for i, item in enumerate(sorted(set(votes.item_id)))}
        counts = np.zeros((len(prompts), len(keys), 3))
        result_index = {"win": 0, "tie": 1, "loss": 2}
        np.add.at(counts, ([prompts[i] for i in votes.item_id],
                           [pair_of[index[a], index[b]] for a, b in zip(votes.model_a, votes.model_b)],
                           [result_index[r] for r in votes.result]), 1)
        return cls(models, np.array([k[0] for k in keys], int), np.array([k[1] for k in keys], int), counts)

    def resampled(self, rng: np.random.Generator) -> np.ndarray:
        weights = np.bincount(rng.integers(0, len(self.counts), len(self.counts)), minlength=len(self.counts))
        return np.tensordot(weights, self.counts, axes=1)


def davidson_fit(models: int, first: np.ndarray, second: np.ndarray, counts: np.ndarray,
                 iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood Davidson model: P(i beats j) ∝ πi, P(tie) ∝ ν√(πi πj), P(j beats i) ∝ πj.

    `counts` is [P, 3] (wins of a, ties, wins of b per model pair) or a batch [B, P, 3] of bootstrap resamples, all
    fitted at once. Returns log-strengths [..., models] (model 0 anchored at 0; NaN where the fit diverges: a model
    that won or lost every decisive vote) and ν [...].

    Fitted by Newton's method written out here: scipy fits one problem at a time (1,000 resamples took minutes on
    2 cores) and no maintained package fits Davidson's model. The log-likelihood is a multinomial logit in
    parameters that enter linearly, hence concave, so Newton's steps (capped in size) converge."""
    counts = np.asarray(counts, dtype=float)
    single = counts.ndim == 2
    counts = counts[None] if single else counts                                   # [B, P, 3]
    n = counts.sum(axis=2)                                                        # [B, P]
    # linear predictors (a wins, tie, b wins) = design @ (log-strengths of models 1.., log ν)
    design = np.zeros((len(first), 3, models + 1))                                # [P, 3, models + 1]
    rows = np.arange(len(first))
    design[rows, 0, first] = 1.0
    design[rows, 1, first] += 0.5
    design[rows, 1, second] += 0.5
    design[rows, 1, models] = 1.0
    design[rows, 2, second] = 1.0
    design = design[:, :, 1:]                                                     # model 0 is the anchor
    params = np.zeros((len(counts), models))                                      # [B, models - 1 + 1]
    for _ in range(iterations):
        eta = np.einsum("pcq,bq->bpc", design, params)
        prob = np.exp(eta - eta.max(axis=2, keepdims=True))
        prob /= prob.sum(axis=2, keepdims=True)                                   # [B, P, 3]
        gradient = np.einsum("bpc,pcq->bq", counts - n[..., None] * prob, design)
        weighted = n[..., None] * prob
        covariance = np.einsum("bpc,cd->bpcd", weighted, np.eye(3)) - np.einsum(
            "bpc,bpd->bpcd", weighted, prob)                                      # n (diag p − p pᵀ)
        information = np.einsum("pcq,bpcd,pdr->bqr", design, covariance, design)
        information += 1e-9 * np.eye(models)                                      # stays solvable as a fit diverges
        step = np.linalg.solve(information, gradient[..., None])[..., 0]
        step *= np.minimum(1.0, 1.0 / np.maximum(np.abs(step).max(axis=1, keepdims=True), 1e-12))
        params = np.clip(params + step, -2 * DIVERGED, 2 * DIVERGED)
        if np.abs(step).max() < 1e-10:
            break
    theta = np.concatenate([np.zeros((len(params), 1)), params[:, :-1]], axis=1)
    theta[np.abs(theta) > DIVERGED] = np.nan
    nu = np.exp(params[:, -1])
    return (theta[0], nu[0]) if single else (theta, nu)


def elo(log_strength: np.ndarray) -> np.ndarray:
    """Natural-log strengths on Arena's scale: 1000 + 400·log10(strength) (the first model anchored at 1000)."""
    return ELO_INITIAL + ELO_SCALE * log_strength / math.log(ELO_BASE)


def davidson(votes: pd.DataFrame, models: list[str] | None = None, resamples: int = DAVIDSON_RESAMPLES,
             seed: int = 0) -> pd.DataFrame:
    """Davidson Bradley–Terry ratings (ties modelled) on Arena's scale with percentile intervals from a bootstrap
    over prompts. Columns: model, rating, low, high, log_strength, tie_parameter."""
    data = PairCounts.of(votes, models)
    totals = data.counts.sum(axis=0)
    theta, nu = davidson_fit(len(data.models), data.first, data.second, totals)
    rng = np.random.default_rng(seed)
    batch = np.array([data.resampled(rng) for _ in range(resamples if len(data.counts) > 1 else 0)])
    samples = (davidson_fit(len(data.models), data.first, data.second, batch)[0] if len(batch)
               else np.zeros((0, len(data.models))))
    low, high = _percentiles(elo(samples), elo(theta))
    return pd.DataFrame({"model": data.models, "rating": elo(theta), "low": low, "high": high,
                         "log_strength": theta, "tie_parameter": float(nu)})


def arena_fit(models: int, first: np.ndarray, second: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Chatbot Arena's fit: logistic regression without intercept on ±1 model indicators, a tie as half a win for
    each side. Returns ratings on Arena's scale (model 0 anchored at 1000; NaN where the fit diverges)."""
    import statsmodels.api as sm

    design = np.zeros((len(first), models))
    design[np.arange(len(first)), first] = 1.0
    design[np.arange(len(first)), second] = -1.0
    design = np.vstack([design, design])[:, 1:]          # model 0 is the anchor
    outcome = np.concatenate([np.ones(len(first)), np.zeros(len(first))])
    weights = np.concatenate([counts[:, 0] + counts[:, 1] / 2, counts[:, 2] + counts[:, 1] / 2])
    keep = weights > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # separation warnings: a diverging fit is reported as NaN below
        fit = sm.GLM(outcome[keep], design[keep], family=sm.families.Binomial(),
                     freq_weights=weights[keep]).fit()
    beta = np.concatenate([[0.0], np.asarray(fit.params)])
    beta[np.abs(beta) > DIVERGED] = np.nan
    return elo(beta)


def arena(votes: pd.DataFrame, models: list[str] | None = None, resamples: int = ARENA_RESAMPLES,
          seed: int = 42) -> pd.DataFrame:
    """Arena-style ratings with a bootstrap (100 resamples of prompts, fixed seed, as Arena does)."""
    data = PairCounts.of(votes, models)
    rating = arena_fit(len(data.models), data.first, data.second, data.counts.sum(axis=0))
    rng = np.random.default_rng(seed)
    samples = np.array([arena_fit(len(data.models), data.first, data.second, data.resampled(rng))
                        for _ in range(resamples if len(data.counts) > 1 else 0)]).reshape(-1, len(data.models))
    low, high = _percentiles(samples, rating)
    return pd.DataFrame({"model": data.models, "rating": rating, "low": low, "high": high})


def _percentiles(samples: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(samples) == 0:
        return np.full_like(point, np.nan), np.full_like(point, np.nan)
    tail = (1 - CONFIDENCE) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    diverged = np.isnan(samples).mean(axis=0) > 0.05   # an interval over the fits that converged would be too short
    return np.where(diverged | np.isnan(point), np.nan, low), np.where(diverged | np.isnan(point), np.nan, high)


# -- agreement between raters ------------------------------------------------------------------------------------------

CODES = {"win": 0, "tie": 1, "loss": 2}


def agreement(votes: pd.DataFrame) -> pd.DataFrame:
    """Per criterion: pairwise percent agreement, Krippendorff's α (nominal, every unit with ≥ 2 ratings) and
    Fleiss' κ (statsmodels; it
    needs the same number m of ratings per unit, so it uses the m first ratings of each unit with ≥ m, m chosen
    to use the most ratings), with how many units and ratings stand behind each."""
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    rows = []
    for criterion, group in votes.groupby("criterion", sort=True):
        group = group.sort_values("cast_at")
        matrix = group.pivot_table(index="rater_id", columns="pair_id", values="result",
                                   aggfunc="first").map(CODES.get)
        rated = matrix.notna().sum(axis=0)
        shared = matrix.loc[:, rated >= 2].astype(float)
        row = {"criterion": criterion, "units": int(shared.shape[1]), "raters": int(shared.notna().any(axis=1).sum()),
               "pairwise_agreement": _pairwise_agreement(shared.to_numpy()), "alpha": math.nan, "kappa": math.nan,
               "kappa_units": 0, "kappa_raters_per_unit": 0}
        # α and κ are 0/0 when every answer is the same: undefined, left NaN (pairwise agreement still says 1)
        values = np.unique(shared.to_numpy()[~np.isnan(shared.to_numpy())])
        if shared.shape[1] >= 1 and len(values) >= 2:
            row["alpha"] = float(krippendorff.alpha(reliability_data=shared.to_numpy(),
                                                    level_of_measurement="nominal"))
        if shared.shape[1] >= 1:
            counts = rated[rated >= 2]
            m = max(sorted(set(counts)), key=lambda k: k * int((counts >= k).sum()))
            first_m = group[group.pair_id.isin(counts[counts >= m].index)]
            first_m = first_m[first_m.groupby("pair_id").cumcount() < m]          # group is in voting order
            table = pd.crosstab(first_m.pair_id, first_m.result.map(CODES)).reindex(
                columns=range(3), fill_value=0).to_numpy()
            if len(values) >= 2:
                row["kappa"] = float(fleiss_kappa(table, method="fleiss"))
            row["kappa_units"], row["kappa_raters_per_unit"] = len(table), int(m)
        rows.append(row)
    return pd.DataFrame(rows)


def _pairwise_agreement(matrix: np.ndarray) -> float:
    """Share of pairs of raters on the same unit who gave the same answer, pooled over units (raters × units)."""
    agree = pairs = 0
    for column in matrix.T:
        answers = column[~np.isnan(column)]
        counts = np.unique(answers, return_counts=True)[1]
        agree += int((counts * (counts - 1)).sum() // 2)
        pairs += len(answers) * (len(answers) - 1) // 2
    return agree / pairs if pairs else math.nan


# -- left-side bias ------------------------------------------------------------------------------------------------------

def side_bias(votes: pd.DataFrame) -> pd.DataFrame:
    """Per criterion: share of decisive votes for the left clip, Wilson interval, two-sided binomial test vs ½."""
    rows = []
    for criterion, group in votes.groupby("criterion", sort=True):
        decisive = group.left_won.dropna()
        left = int(decisive.sum())
        low, high = wilson(left, len(decisive))
        p_value = stats.binomtest(left, len(decisive)).pvalue if len(decisive) else math.nan
        rows.append({"criterion": criterion, "decisive": len(decisive), "left_share": left / max(1, len(decisive)),
                     "low": low, "high": high, "p_value": float(p_value)})
    return pd.DataFrame(rows)


# -- raters --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RaterBars:
    min_catch_pass: float = 0.7           # share of catch answers that must match the known answer
    min_consistency: float = 0.5          # share of repeated answers that must match the first
    min_repeats: int = 3                  # repeated answers needed before consistency can flag a rater


def expected_correct(votes: pd.DataFrame) -> pd.Series:
    """For catch votes whose criterion has a known answer: 1.0 when the vote gave it, else 0.0; NaN elsewhere."""
    as_result = {"a": "win", "b": "loss", "tie": "tie"}
    answers = [json.loads(text).get(criterion) if isinstance(text, str) else None
               for text, criterion in zip(votes.expected, votes.criterion)]
    return pd.Series([math.nan if answer is None else float(as_result[answer] == result)
                      for answer, result in zip(answers, votes.result)], index=votes.index, dtype=float)


def raters(votes: pd.DataFrame, bars: RaterBars = RaterBars()) -> pd.DataFrame:
    """Per rater: votes, catch-trial pass rate (Wilson interval), self-consistency on swapped repeats, left share of
    decisive votes, and `fails` (why the rater fails, empty when they pass)."""
    votes = votes.assign(correct=expected_correct(votes))
    first = votes[votes.slot != "repeat"].set_index(["trial_id", "criterion"]).result
    rows = []
    for (rater_id, name), group in votes.groupby(["rater_id", "rater"], sort=True):
        caught = group.correct.dropna()
        repeats = group[group.slot == "repeat"]
        matches = [first.get((r.repeat_of, r.criterion)) == r.result for r in repeats.itertuples()
                   if (r.repeat_of, r.criterion) in first.index]
        catch_pass = caught.mean() if len(caught) else math.nan
        consistency = float(np.mean(matches)) if matches else math.nan
        flags = []
        if len(caught) and catch_pass < bars.min_catch_pass:
            flags.append(f"catch pass {catch_pass:.0%} < {bars.min_catch_pass:.0%}")
        if len(matches) >= bars.min_repeats and consistency < bars.min_consistency:
            flags.append(f"self-consistency {consistency:.0%} < {bars.min_consistency:.0%}")
        decisive = group.left_won.dropna()
        rows.append({"rater_id": rater_id, "rater": name, "votes": len(group), "trials": group.trial_id.nunique(),
                     "catch_answers": len(caught), "catch_pass": catch_pass,
                     "catch_low": wilson(int(caught.sum()), len(caught))[0],
                     "catch_high": wilson(int(caught.sum()), len(caught))[1],
                     "repeat_answers": len(matches), "self_consistency": consistency,
                     "left_share": decisive.mean() if len(decisive) else math.nan, "fails": "; ".join(flags)})
    return pd.DataFrame(rows)


# -- how many votes ------------------------------------------------------------------------------------------------------

def decisive_votes_needed(share: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Decisive (non-tie) votes for a two-sided test at `alpha` to tell a win share `share` from ½ with `power`."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if not 0 < share < 1 or math.isclose(share, 0.5):
        return math.inf
    effect = abs(proportion_effectsize(share, 0.5))
    return float(NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=0))


def votes_to_separate(votes: pd.DataFrame, margin: float = 0.55) -> pd.DataFrame:
    """Per criterion × matchup: decisive votes so far, the observed decisive win share, and how many more votes
    (ties included, at the observed tie rate) would separate the two models if the true share were the observed one
    and if it were `margin`."""
    rows = []
    for (criterion, matchup), group in votes.groupby(["criterion", "matchup"], sort=True):
        decisive = group[group.result != "tie"]
        observed = (decisive.result == "win").mean() if len(decisive) else math.nan
        decisive_rate = len(decisive) / len(group) if len(group) else math.nan
        row = {"criterion": criterion, "matchup": matchup, "votes": len(group), "decisive": len(decisive),
               "decisive_share_a": observed}
        for label, share in (("at_observed", observed), (f"at_{margin:g}", margin)):
            needed = decisive_votes_needed(share) if not math.isnan(share) else math.nan
            more = max(0.0, math.ceil(needed) - len(decisive)) if math.isfinite(needed) else needed
            row[f"more_votes_{label}"] = (math.ceil(more / decisive_rate) if math.isfinite(more) and decisive_rate
                                          else more)
        rows.append(row)
    return pd.DataFrame(rows)


# -- which automatic metric agrees with people ------------------------------------------------------------------------

def metric_agreement(votes: pd.DataFrame, metric_values: pd.DataFrame) -> pd.DataFrame:
    """Per metric × criterion × language (and `all`): among decisive human votes on pairs where the metric tells the
    clips apart, the share whose winner the metric also prefers (Wilson 95%); and, counting human ties as misses
    (a metric never says tie), the same share over all those votes.

    `metric_values`: sha256, metric, value, lower_is_better (one row per clip and metric)."""
    rows = []
    for metric, values in metric_values.groupby("metric", sort=True):
        by_clip = values.set_index("sha256").value
        lower_is_better = bool(values.lower_is_better.iloc[0])
        value_a = votes.sha256_a.map(by_clip)
        value_b = votes.sha256_b.map(by_clip)
        differ = value_a.notna() & value_b.notna() & (value_a != value_b)
        prefers_a = (value_a < value_b) if lower_is_better else (value_a > value_b)
        scored = votes[differ].assign(prefers_a=prefers_a[differ])
        for criterion, group in scored.groupby("criterion", sort=True):
            for language, part in [*group.groupby("language", sort=True), (ALL, group)]:
                decisive = part[part.result != "tie"]
                agree = int(((decisive.result == "win") == decisive.prefers_a).sum())
                low, high = wilson(agree, len(decisive))
                rows.append({"metric": metric, "criterion": criterion, "language": language,
                             "decisive": len(decisive), "agreement": agree / len(decisive) if len(decisive)
                             else math.nan, "low": low, "high": high, "with_ties": len(part),
                             "agreement_with_ties": agree / len(part) if len(part) else math.nan,
                             "raters": part.rater_id.nunique()})
    return pd.DataFrame(rows)
