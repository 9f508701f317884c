"""The statistics of a pairwise study, on a votes table (`StudyStore.votes()` or a synthetic one of the same shape).

Maintained libraries wherever one does the job: Wilson intervals, the power calculation, Fleiss' κ and the Arena
logistic regression come from statsmodels, Krippendorff's α from `krippendorff`, the binomial test from scipy.
Davidson's tie model is fitted here (batched Newton) because no maintained package fits it.

A vote's `result` is read from the pair's first model ("a", in the study's model order): win, tie or loss, whatever
side that clip was shown on; `left_won` keeps the side for the bias test.

Votes are not independent: every rater sees many pairs and every pair is seen by many raters, so votes cluster by
prompt and by rater (a prompt that suits one model, a rater who likes one model's look). Every interval on votes
(win / tie / loss shares, decisive shares, the Davidson and Arena ratings, metric–human agreement) therefore comes
from the two-way cluster-robust variance of Cameron, Gelbach & Miller (2011): V = V_prompt + V_rater − V_cell, each
term the sandwich of the estimator's per-vote scores summed within clusters (prompts; raters; prompt × rater
cells) with the small-sample factor G/(G − 1) (the larger one-way term where the difference comes out negative),
and a t quantile with min(prompts, raters) − 1 degrees of freedom. It is the
analytic counterpart of a two-way cluster bootstrap without the pigeonhole bootstrap's bias: resampling prompts
and raters independently counts the vote-level noise three times (Owen 2007), and binary votes are mostly noise.
Where no prompt and no rater gave more than one vote to a row the votes are independent and the plain Wilson
interval is used; with a single rater (or prompt) the other factor cannot be resampled and the interval holds for
that rater (prompt) only. Each row says which interval it carries (`interval`: `INTERVALS`).
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
DIVERGED = 15.0   # |log-strength| at which a fit is diverging (a model that won or lost every decisive vote)
MIN_CLUSTERS = 5  # fewer prompts or raters than this behind an interval: printed, but marked "too few"
MIN_AGREEMENT_UNITS = 5   # pairs rated by two raters or more, below which α and κ are "too few"

WILSON, TWO_WAY, PROMPTS_ONLY, RATERS_ONLY, NONE = ("wilson", "two-way cluster", "prompt cluster (one rater)",
                                                    "rater cluster (one prompt)", "none")
INTERVALS = {WILSON: "Wilson score interval (independent votes: no prompt or rater voted twice in the row)",
             TWO_WAY: "two-way cluster-robust (prompts × raters, Cameron–Gelbach–Miller)",
             PROMPTS_ONLY: "cluster-robust over prompts; one rater, so it holds for that rater only",
             RATERS_ONLY: "cluster-robust over raters; one prompt, so it holds for that prompt only",
             NONE: "no interval (a single vote, one rater on one prompt, or a fit that diverged)"}


def wilson(successes: float, n: float, confidence: float = CONFIDENCE,
           critical: float | None = None) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) without observations. `successes` and `n` may be
    fractional (a metric tie counts half; an effective number of votes); `critical` replaces the normal quantile
    of `confidence` (a t quantile)."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return math.nan, math.nan
    alpha = 1 - confidence if critical is None else 2 * stats.norm.sf(critical)
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return float(low), float(high)


# -- two-way clustered variance --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clustering:
    """How the votes behind one estimate cluster: which interval applies, and its t quantile."""

    kind: str
    prompts: int
    raters: int

    @classmethod
    def of(cls, prompts: np.ndarray, raters: np.ndarray) -> "Clustering":
        prompt_counts = pd.Series(prompts).value_counts()
        rater_counts = pd.Series(raters).value_counts()
        n_prompts, n_raters = len(prompt_counts), len(rater_counts)
        if len(prompts) < 2 or (n_prompts < 2 and n_raters < 2):   # one vote, or one rater on one prompt
            kind = NONE
        elif prompt_counts.max() == 1 and rater_counts.max() == 1:
            kind = WILSON
        elif n_prompts >= 2 and n_raters >= 2:
            kind = TWO_WAY
        else:
            kind = PROMPTS_ONLY if n_prompts >= 2 else RATERS_ONLY
        return cls(kind, n_prompts, n_raters)

    @property
    def clusters(self) -> int:
        """The scarcer factor's cluster count: the effective number of independent units when all votes agree."""
        return {TWO_WAY: min(self.prompts, self.raters), PROMPTS_ONLY: self.prompts,
                RATERS_ONLY: self.raters}.get(self.kind, 0)

    @property
    def too_few(self) -> bool:
        return self.kind != WILSON and self.clusters < MIN_CLUSTERS

    def quantile(self) -> float:
        """The two-sided critical value: normal for independent votes, t(G − 1) for G clusters of the scarcer
        factor (Cameron–Gelbach–Miller's recommendation for few clusters)."""
        tail = 1 - (1 - CONFIDENCE) / 2
        if self.kind == WILSON:
            return float(stats.norm.ppf(tail))
        return float(stats.t.ppf(tail, max(1, self.clusters - 1))) if self.clusters >= 2 else math.nan


def cluster_variances(scores: np.ndarray, bread: np.ndarray, prompts: np.ndarray, raters: np.ndarray,
                      clustering: Clustering) -> np.ndarray:
    """Variances of an M-estimator's parameters from its per-vote scores [N, q] and the inverse of its Hessian
    `bread` [q, q] (the sandwich bread · meat · bread), clustered as `clustering` says (see the module
    docstring). Returns [q]."""
    scores = np.asarray(scores, dtype=float).reshape(len(prompts), -1)

    def one_way(*keys: np.ndarray) -> np.ndarray:
        codes = pd.MultiIndex.from_arrays(keys).codes if len(keys) > 1 else [pd.factorize(keys[0])[0]]
        groups = (np.ravel_multi_index(codes, [int(c.max()) + 1 for c in codes]) if len(keys) > 1 else codes[0])
        _, groups = np.unique(groups, return_inverse=True)
        count = int(groups.max()) + 1
        sums = np.zeros((count, scores.shape[1]))
        np.add.at(sums, groups, scores)
        meat = sums.T @ sums * (count / (count - 1) if count > 1 else math.nan)
        return np.diag(bread @ meat @ bread.T)

    if clustering.kind == NONE:
        return np.full(scores.shape[1], math.nan)
    if clustering.kind == WILSON:
        return one_way(np.arange(len(prompts)))
    if clustering.kind == PROMPTS_ONLY:
        return one_way(prompts)
    if clustering.kind == RATERS_ONLY:
        return one_way(raters)
    by_prompt, by_rater = one_way(prompts), one_way(raters)
    both = by_prompt + by_rater - one_way(prompts, raters)
    return np.where(both > 0, both, np.maximum(by_prompt, by_rater))


def share_interval(values: np.ndarray, prompts: np.ndarray, raters: np.ndarray,
                   clustering: Clustering | None = None) -> tuple[float, float]:
    """Interval of the mean of per-vote values in [0, 1] (1 a win, ½ a metric tie, 0 a loss): Wilson for
    independent votes; otherwise Wilson on the effective number of votes n_eff = p(1 − p) / V (Kish's design
    effect, V the clustered variance, taken as estimated: capping it at n would bias a noisy estimate upwards;
    when every vote agrees, the scarcer factor's cluster count), with the t quantile, so it stays inside [0, 1]."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    clustering = clustering or Clustering.of(prompts, raters)
    if n == 0 or clustering.kind == NONE:
        return math.nan, math.nan
    p = float(values.mean())
    if clustering.kind == WILSON:
        return wilson(float(values.sum()), n)
    variance = float(cluster_variances(values - p, np.array([[1.0 / n]]), prompts, raters, clustering)[0])
    if 0 < p < 1 and variance > 0:
        effective = p * (1 - p) / variance
    else:
        effective = float(min(n, clustering.clusters))
    critical = clustering.quantile()
    return wilson(p * effective, effective, critical=critical)


def win_loss_p_value(results: np.ndarray, prompts: np.ndarray, raters: np.ndarray,
                     clustering: Clustering) -> float:
    """Two-sided p-value of "the first model wins as often as it loses": the mean of +1 (win) / 0 (tie) / −1 (loss)
    over its clustered standard error, against the same t (or normal) distribution the intervals use. NaN for a
    row with too few prompts or raters (`Clustering.too_few`), which is not tested."""
    if clustering.kind == NONE or clustering.too_few:
        return math.nan
    signed = (results == "win").astype(float) - (results == "loss").astype(float)
    mean = float(signed.mean())
    variance = float(cluster_variances(signed - mean, np.array([[1.0 / len(signed)]]), prompts, raters,
                                       clustering)[0])
    if variance <= 0:
        return 1.0 if mean == 0 else 0.0   # every vote the same and not a tie: as far from "even" as it gets
    statistic = abs(mean) / math.sqrt(variance)
    if clustering.kind == WILSON:
        return float(2 * stats.norm.sf(statistic))
    return float(2 * stats.t.sf(statistic, max(1, clustering.clusters - 1)))


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
    """Per criterion × matchup × language (and `all`): n, raters, prompts, win / tie / loss shares of all votes and
    the decisive win share (ties left out: wins / (wins + losses), over `decisive` votes), each with its 95%
    interval; `interval` names the interval (`INTERVALS`) and `too_few` marks rows with fewer than
    `MIN_CLUSTERS` prompts or raters behind a clustered interval; `p` tests wins = losses (`win_loss_p_value`;
    NaN, not tested, for a row with too few)."""
    rows = []
    for (criterion, matchup), group in votes.groupby(["criterion", "matchup"], sort=True):
        for language, by_language in [*group.groupby("language", sort=True), (ALL, group)]:
            prompts, raters = by_language.item_id.to_numpy(), by_language.rater_id.to_numpy()
            clustering = Clustering.of(prompts, raters)
            row = {"criterion": criterion, "matchup": matchup, "language": language, "n": len(by_language),
                   "raters": clustering.raters, "prompts": clustering.prompts, "interval": clustering.kind,
                   "too_few": clustering.too_few}
            for result in RESULTS:
                hit = (by_language.result == result).to_numpy(float)
                row[result] = float(hit.mean())
                row[f"{result}_low"], row[f"{result}_high"] = share_interval(hit, prompts, raters, clustering)
            row["p"] = win_loss_p_value(by_language.result.to_numpy(), prompts, raters, clustering)
            decisive = (by_language.result != "tie").to_numpy()
            won = (by_language.result[decisive] == "win").to_numpy(float)
            row["decisive"] = int(decisive.sum())
            row["decisive_win"] = float(won.mean()) if len(won) else math.nan
            row["decisive_win_low"], row["decisive_win_high"] = share_interval(won, prompts[decisive],
                                                                               raters[decisive])
            rows.append(row)
    return pd.DataFrame(rows)


# -- Bradley–Terry -----------------------------------------------------------------------------------------------------

RESULT_INDEX = {"win": 0, "tie": 1, "loss": 2}


@dataclass(frozen=True)
class PairVotes:
    """The votes of one criterion as model-pair indices and outcomes, with each vote's prompt and rater."""

    models: list[str]
    first: np.ndarray      # [P] model index of each pair's "a"
    second: np.ndarray     # [P]
    pair: np.ndarray       # [N] each vote's pair
    outcome: np.ndarray    # [N] 0 a won, 1 tie, 2 b won
    prompts: np.ndarray    # [N]
    raters: np.ndarray     # [N]

    @classmethod
    def of(cls, votes: pd.DataFrame, models: list[str] | None = None) -> "PairVotes":
        models = models or sorted(set(votes.model_a) | set(votes.model_b))
        index = {model: i for i, model in enumerate(models)}
        keys = sorted({(index[a], index[b]) for a, b in zip(votes.model_a, votes.model_b)})
        pair_of = {key: p for p, key in enumerate(keys)}
        return cls(models, np.array([k[0] for k in keys], int), np.array([k[1] for k in keys], int),
                   np.array([pair_of[index[a], index[b]] for a, b in zip(votes.model_a, votes.model_b)], int),
                   votes.result.map(RESULT_INDEX).to_numpy(int), votes.item_id.to_numpy(), votes.rater_id.to_numpy())

    def counts(self) -> np.ndarray:
        """[P, 3]: wins of a, ties, wins of b per model pair."""
        counts = np.zeros((len(self.first), 3))
        np.add.at(counts, (self.pair, self.outcome), 1)
        return counts

    def clustering(self) -> Clustering:
        return Clustering.of(self.prompts, self.raters)


def davidson_design(models: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[P, 3, models]: linear predictors (a wins, tie, b wins) = design @ (log-strengths of models 1.., log ν)."""
    design = np.zeros((len(first), 3, models + 1))
    rows = np.arange(len(first))
    design[rows, 0, first] = 1.0
    design[rows, 1, first] += 0.5
    design[rows, 1, second] += 0.5
    design[rows, 1, models] = 1.0
    design[rows, 2, second] = 1.0
    return design[:, :, 1:]                                                       # model 0 is the anchor


def davidson_fit(models: int, first: np.ndarray, second: np.ndarray, counts: np.ndarray,
                 iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood Davidson model: P(i beats j) ∝ πi, P(tie) ∝ ν√(πi πj), P(j beats i) ∝ πj.

    `counts` is [P, 3] (wins of a, ties, wins of b per model pair) or a batch [B, P, 3], all fitted at once.
    Returns log-strengths [..., models] (model 0 anchored at 0; NaN where the fit diverges: a model that won or
    lost every decisive vote) and ν [...].

    Fitted by Newton's method written out here: scipy fits one problem at a time and no maintained package fits
    Davidson's model. The log-likelihood is a multinomial logit in parameters that enter linearly, hence concave,
    so Newton's steps (capped in size) converge."""
    counts = np.asarray(counts, dtype=float)
    single = counts.ndim == 2
    counts = counts[None] if single else counts                                   # [B, P, 3]
    n = counts.sum(axis=2)                                                        # [B, P]
    design = davidson_design(models, first, second)
    params = np.zeros((len(counts), models))                                      # [B, models - 1 + 1]
    for _ in range(iterations):
        prob = _davidson_probabilities(design, params)                            # [B, P, 3]
        gradient = np.einsum("bpc,pcq->bq", counts - n[..., None] * prob, design)
        information = _davidson_information(design, prob, n)
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


def _davidson_probabilities(design: np.ndarray, params: np.ndarray) -> np.ndarray:
    eta = np.einsum("pcq,bq->bpc", design, params)
    prob = np.exp(eta - eta.max(axis=2, keepdims=True))
    return prob / prob.sum(axis=2, keepdims=True)


def _davidson_information(design: np.ndarray, prob: np.ndarray, n: np.ndarray) -> np.ndarray:
    weighted = n[..., None] * prob
    covariance = np.einsum("bpc,cd->bpcd", weighted, np.eye(3)) - np.einsum(
        "bpc,bpd->bpcd", weighted, prob)                                          # n (diag p − p pᵀ)
    return np.einsum("pcq,bpcd,pdr->bqr", design, covariance, design)


def elo(log_strength: np.ndarray) -> np.ndarray:
    """Natural-log strengths on Arena's scale: 1000 + 400·log10(strength) (the first model anchored at 1000)."""
    return ELO_INITIAL + ELO_SCALE * log_strength / math.log(ELO_BASE)


def _rating_frame(data: PairVotes, rating: np.ndarray, log_variance: np.ndarray) -> pd.DataFrame:
    """Ratings with their clustered 95% intervals; `log_variance` [models] on the natural-log strength scale
    (0 for the anchor, which has no interval)."""
    clustering = data.clustering()
    half = clustering.quantile() * ELO_SCALE / math.log(ELO_BASE) * np.sqrt(log_variance)
    half = np.where(np.isfinite(rating) & (np.arange(len(rating)) > 0), half, np.nan)
    return pd.DataFrame({"model": data.models, "rating": rating, "low": rating - half, "high": rating + half,
                         "interval": clustering.kind, "prompts": clustering.prompts, "raters": clustering.raters,
                         "too_few": clustering.too_few})


def davidson(votes: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Davidson Bradley–Terry ratings (ties modelled) on Arena's scale, with 95% intervals from the two-way
    clustered sandwich of the fit's per-vote scores. Columns: model, rating, low, high, interval, prompts, raters,
    too_few, log_strength, tie_parameter."""
    data = PairVotes.of(votes, models)
    models_count = len(data.models)
    theta, nu = davidson_fit(models_count, data.first, data.second, data.counts())
    variance = np.full(models_count, np.nan)
    if np.isfinite(theta).all() and models_count > 1:
        design = davidson_design(models_count, data.first, data.second)
        params = np.concatenate([theta[1:], [math.log(nu)]])[None]
        prob = _davidson_probabilities(design, params)[0]                          # [P, 3]
        mine = design[data.pair]                                                  # [N, 3, q]
        scores = mine[np.arange(len(data.pair)), data.outcome] - np.einsum("nc,ncq->nq", prob[data.pair], mine)
        information = _davidson_information(design, prob[None], data.counts().sum(axis=1)[None])[0]
        with np.errstate(invalid="ignore"):
            variance[1:] = cluster_variances(scores, np.linalg.pinv(information), data.prompts, data.raters,
                                             data.clustering())[:-1]
    variance[0] = 0.0
    return _rating_frame(data, elo(theta), variance).assign(log_strength=theta, tie_parameter=float(nu))


def arena_fit(models: int, first: np.ndarray, second: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Chatbot Arena's fit: logistic regression without intercept on ±1 model indicators, a tie as half a win for
    each side. Returns ratings on Arena's scale (model 0 anchored at 1000; NaN where the fit diverges)."""
    import statsmodels.api as sm

    design = np.vstack([_arena_design(models, first, second)] * 2)
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


def _arena_design(models: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    design = np.zeros((len(first), models))
    design[np.arange(len(first)), first] = 1.0
    design[np.arange(len(first)), second] = -1.0
    return design[:, 1:]                                  # model 0 is the anchor


def arena(votes: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Arena-style ratings with 95% intervals from the two-way clustered sandwich of the logistic fit's per-vote
    scores (score = (s − p)·x, s = 1 / ½ / 0 for a win / tie / loss of a)."""
    data = PairVotes.of(votes, models)
    models_count = len(data.models)
    rating = arena_fit(models_count, data.first, data.second, data.counts())
    variance = np.full(models_count, np.nan)
    if np.isfinite(rating).all() and models_count > 1:
        design = _arena_design(models_count, data.first, data.second)           # [P, q]
        beta = (rating[1:] - ELO_INITIAL) * math.log(ELO_BASE) / ELO_SCALE
        p = 1 / (1 + np.exp(-design @ beta))                                     # [P]
        score_of_a = np.array([1.0, 0.5, 0.0])[data.outcome]
        scores = (score_of_a - p[data.pair])[:, None] * design[data.pair]
        information = np.einsum("p,pq,pr->qr", data.counts().sum(axis=1) * p * (1 - p), design, design)
        variance[1:] = cluster_variances(scores, np.linalg.pinv(information), data.prompts, data.raters,
                                         data.clustering())
    variance[0] = 0.0
    return _rating_frame(data, rating, variance)


# -- agreement between raters ------------------------------------------------------------------------------------------

CODES = {"win": 0, "tie": 1, "loss": 2}


def agreement(votes: pd.DataFrame) -> pd.DataFrame:
    """Per criterion: pairwise percent agreement, Krippendorff's α (nominal, every unit with ≥ 2 ratings) and
    Fleiss' κ (statsmodels; it
    needs the same number m of ratings per unit, so it uses the m first ratings of each unit with ≥ m, m chosen
    to use the most ratings), with how many units and ratings stand behind each. `too_few`: fewer than
    `MIN_AGREEMENT_UNITS` pairs rated twice; α and κ are then still computed but mean nothing (one pair gives 0 or
    −1), and readers print "too few"."""
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    rows = []
    for criterion, group in votes.groupby("criterion", sort=True):
        group = group.sort_values("cast_at")
        matrix = group.pivot_table(index="rater_id", columns="pair_id", values="result",
                                   aggfunc="first").map(CODES.get)
        rated = matrix.notna().sum(axis=0)
        shared = matrix.loc[:, rated >= 2].astype(float)
        row = {"criterion": criterion, "units": int(shared.shape[1]), "too_few": shared.shape[1] < MIN_AGREEMENT_UNITS,
               "raters": int(shared.notna().any(axis=1).sum()),
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
    min_catch_answers: int = 8            # catch answers needed before the pass rate can flag a rater (with 8, a
                                          # rater right 90% of the time is flagged 3.8% of the time; with 1, 10%)
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
    """Per rater: votes, catch-trial pass rate (Wilson interval) over `catch_answers`, self-consistency on swapped
    repeats over `repeat_answers`, left share of decisive votes over `decisive`, and `fails` (why the rater fails,
    empty when they pass; a rate only fails with enough answers behind it: `RaterBars`)."""
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
        if len(caught) >= bars.min_catch_answers and catch_pass < bars.min_catch_pass:
            flags.append(f"catch pass {catch_pass:.0%} < {bars.min_catch_pass:.0%}")
        if len(matches) >= bars.min_repeats and consistency < bars.min_consistency:
            flags.append(f"self-consistency {consistency:.0%} < {bars.min_consistency:.0%}")
        decisive = group.left_won.dropna()
        rows.append({"rater_id": rater_id, "rater": name, "votes": len(group), "trials": group.trial_id.nunique(),
                     "catch_answers": len(caught), "catch_pass": catch_pass,
                     "catch_low": wilson(int(caught.sum()), len(caught))[0],
                     "catch_high": wilson(int(caught.sum()), len(caught))[1],
                     "repeat_answers": len(matches), "self_consistency": consistency,
                     "decisive": len(decisive), "left_share": decisive.mean() if len(decisive) else math.nan,
                     "fails": "; ".join(flags)})
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
    """Per metric × criterion × language (and `all`): among decisive human votes on pairs the metric scored, the
    share whose winner the metric also prefers, a metric tie (equal values: WER 0 vs 0, two 4s of a 1–5 judge)
    counting half, so a coarse metric is not scored on the easy pairs only (`metric_ties` says how many); with its
    95% interval (clustered by prompt and rater, `interval`). `agreement_with_ties` is the same over all votes,
    human ties included: a human tie that the metric also ties agrees, one the metric decides is a miss.

    `metric_values`: sha256, metric, value, lower_is_better (one row per clip and metric; only the clips the metric
    itself trusts, `Metric.compared_rows`)."""
    rows = []
    for metric, values in metric_values.groupby("metric", sort=True):
        by_clip = values.set_index("sha256").value
        lower_is_better = bool(values.lower_is_better.iloc[0])
        value_a = votes.sha256_a.map(by_clip)
        value_b = votes.sha256_b.map(by_clip)
        scored = value_a.notna() & value_b.notna()
        a_better = (value_a < value_b) if lower_is_better else (value_a > value_b)
        metric_says = np.where(value_a == value_b, "tie", np.where(a_better, "win", "loss"))
        part_votes = votes[scored].assign(metric_says=metric_says[scored.to_numpy()])
        for criterion, group in part_votes.groupby("criterion", sort=True):
            for language, part in [*group.groupby("language", sort=True), (ALL, group)]:
                rows.append({"metric": metric, "criterion": criterion, "language": language,
                             **_agreement_row(part)})
    return pd.DataFrame(rows)


def _agreement_row(part: pd.DataFrame) -> dict:
    decisive = part[part.result != "tie"]
    credit = np.where(decisive.metric_says == "tie", 0.5, (decisive.metric_says == decisive.result).astype(float))
    prompts, raters = decisive.item_id.to_numpy(), decisive.rater_id.to_numpy()
    clustering = Clustering.of(prompts, raters)
    low, high = share_interval(credit, prompts, raters, clustering)
    human_tie = part.result == "tie"
    every = np.where(human_tie, (part.metric_says == "tie").astype(float),
                     np.where(part.metric_says == "tie", 0.5, (part.metric_says == part.result).astype(float)))
    return {"decisive": len(decisive), "metric_ties": int((decisive.metric_says == "tie").sum()),
            "agreement": float(credit.mean()) if len(credit) else math.nan, "low": low, "high": high,
            "interval": clustering.kind, "too_few": clustering.too_few, "with_ties": len(part),
            "agreement_with_ties": float(every.mean()) if len(part) else math.nan,
            "raters": part.rater_id.nunique(), "prompts": part.item_id.nunique()}
