"""A study's results as tables, markdown (with a protocol paragraph a paper can quote), JSON and a terminal view.

One `StudyReport` feeds the command line, the exports and the dashboard, so they cannot disagree.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mheval.review import stats
from mheval.review.stats import ALL, RaterBars
from mheval.review.storage import CRITERION_LABELS, StudyStore
from mheval.stats import ADJUSTMENTS, adjust_p_values
from mheval.verdicts import A_BETTER, B_BETTER, DEFAULT_ALPHA, INSUFFICIENT, decide

HUMAN_ADJUSTMENT = "holm"


CATCH_DESCRIPTIONS = {"audio_shift": "audio shifted {shift_ms:g} ms vs in sync", "frozen_video": "frozen video vs the "
                      "original", "identical": "identical clips"}


@dataclass
class StudyReport:
    settings: dict[str, Any]
    shares: pd.DataFrame              # criterion × matchup × language: win/tie/loss, decisive win share, clustered
                                      # intervals, Holm-adjusted win-vs-loss verdicts
    davidson: pd.DataFrame            # criterion × model: Davidson rating, clustered interval
    arena: pd.DataFrame               # criterion × model: Arena-style rating, clustered interval
    agreement: pd.DataFrame           # criterion: Krippendorff α, Fleiss κ
    side_bias: pd.DataFrame           # criterion: left share of decisive votes
    raters: pd.DataFrame              # rater: catch pass, self-consistency, flags, revoked
    power: pd.DataFrame               # criterion × matchup: votes needed
    metric_agreement: pd.DataFrame    # metric × criterion × language: share of human winners the metric prefers
    protocol: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.shares.empty


def votes_table(store: StudyStore) -> pd.DataFrame:
    """Every vote for export: when, who, which trial and clips, the side chosen, and what it means for the models."""
    votes = stats.outcomes(store.votes())
    winner = votes.left_model.where(votes.verdict == "left", votes.right_model.where(votes.verdict == "right"))
    return pd.DataFrame({
        "timestamp": pd.to_datetime(votes.cast_at, unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "rater": votes.rater, "rater_id": votes.rater_id, "trial": votes.trial_id, "position": votes.position,
        "trial_kind": np.where(votes.slot == "repeat", "repeat", votes.kind), "catch_type": votes.catch_type,
        "item_id": votes.item_id, "language": votes.language, "left_clip": votes.left_clip,
        "right_clip": votes.right_clip, "left_model": votes.left_model, "right_model": votes.right_model,
        "criterion": votes.criterion, "side": votes.verdict, "winner_model": winner,
        "model_a": votes.model_a, "model_b": votes.model_b, "result_for_a": votes.result,
        "sampling": votes.sampling,
    })


def run_metric_values(run_dir: Path) -> pd.DataFrame:
    """Headline value of every registered automatic metric per clip of the run (sha256, metric, value,
    lower_is_better), on the clips each metric itself trusts when models are compared (`Metric.compared_rows`)."""
    from mheval.metrics import metric_class
    from mheval.results import RunResults

    results = RunResults.load(run_dir)
    frames = []
    for name in results.metrics:
        cls = metric_class(name)
        column = f"{name}.{cls.headline}"
        ok = cls.compared_rows(results.usable(name))   # sync: only the clips it measured with confidence
        if column not in ok:
            continue
        frames.append(pd.DataFrame({"sha256": ok.sha256, "metric": column,   # value: lower is better (ranking)
                                    "value": cls.ranking_values(pd.to_numeric(ok[column], errors="coerce")),
                                    "lower_is_better": True}).dropna(subset=["value"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["sha256", "metric", "value", "lower_is_better"])


def build_report(store: StudyStore, exclude_failing_raters: bool = False, margin: float = 0.55,
                 bars: RaterBars = RaterBars(), run_dir: Path | None = None,
                 alpha: float = DEFAULT_ALPHA) -> StudyReport:
    settings = store.settings()
    models = list(settings["models"])
    votes = stats.outcomes(store.votes())
    rater_table = stats.raters(votes, bars) if not votes.empty else pd.DataFrame()
    if not rater_table.empty:
        invited = store.raters()
        rater_table["revoked"] = rater_table.rater_id.isin(invited.rater_id[invited.revoked.notna()])
    excluded = rater_table[rater_table.fails != ""] if not rater_table.empty else rater_table
    kept = votes[~votes.rater_id.isin(excluded.rater_id)] if exclude_failing_raters and len(excluded) else votes
    real = stats.real(kept)
    notes = []
    davidson, arena = [], []
    for criterion, group in real.groupby("criterion", sort=False):
        present = [m for m in models if m in set(group.model_a) | set(group.model_b)]
        davidson.append(stats.davidson(group, present).assign(criterion=criterion))
        arena.append(stats.arena(group, present).assign(criterion=criterion))
    run_dir = Path(run_dir or settings["run_dir"])
    try:
        metric_values = run_metric_values(run_dir)
        agreement_with_metrics = stats.metric_agreement(real, metric_values) if not real.empty else pd.DataFrame()
    except FileNotFoundError as err:
        agreement_with_metrics = pd.DataFrame()
        notes.append(f"metric–human agreement not computed: {err} (give the run with --run)")
    report = StudyReport(
        settings=settings,
        shares=human_verdicts(stats.shares(real), alpha) if not real.empty else pd.DataFrame(),
        davidson=pd.concat(davidson, ignore_index=True) if davidson else pd.DataFrame(),
        arena=pd.concat(arena, ignore_index=True) if arena else pd.DataFrame(),
        agreement=stats.agreement(real) if not real.empty else pd.DataFrame(),
        side_bias=stats.side_bias(kept[kept.kind == "real"]) if not kept.empty else pd.DataFrame(),
        raters=rater_table,
        power=stats.votes_to_separate(real, margin) if not real.empty else pd.DataFrame(),
        metric_agreement=agreement_with_metrics,
        protocol={},
        notes=notes,
    )
    report.protocol = protocol(store, votes, kept, report, excluded if exclude_failing_raters else excluded.iloc[:0],
                               alpha)
    return report


def human_verdicts(shares: pd.DataFrame, alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """The shares table with a verdict per row: does the first model win more often than it loses? The p-values of
    every row tested (criterion × matchup × language, `all` included; rows with too few prompts or raters are not
    tested and say `insufficient`) are adjusted together by Holm (family-wise error rate) with the same machinery
    as `mheval compare` (`mheval.stats.adjust_p_values`, `mheval.verdicts.decide`)."""
    table = shares.assign(delta=shares.win - shares.loss, lower_is_better=False)
    table["p_adjusted"] = adjust_p_values(table.p.to_numpy(dtype=float), HUMAN_ADJUSTMENT)
    table["verdict"] = [decide(row, alpha) for row in table.itertuples()]
    return table.drop(columns=["lower_is_better"])


def protocol(store: StudyStore, votes: pd.DataFrame, kept: pd.DataFrame, report: StudyReport,
             excluded: pd.DataFrame, alpha: float) -> dict[str, Any]:
    settings = store.settings()
    items, pairs, invited = store.items(), store.pairs(), store.raters()
    real = kept[(kept.kind == "real") & (kept.slot != "repeat")]
    catch = stats.expected_correct(votes).dropna()
    return {
        "created": time.strftime("%Y-%m-%d", time.gmtime(settings["created"])),
        "suite": settings["suite"], "suite_hash": settings.get("suite_hash"), "generation_seed": settings["run_seed"],
        "models": settings["models"], "criteria": settings["criteria"],
        "prompts": len(items), "languages": sorted(set(items.language)),
        "real_pairs": int((pairs.kind == "real").sum()), "pairs_rated": int(real.pair_id.nunique()),
        "raters_invited": len(invited), "raters_revoked": int(invited.revoked.notna().sum()),
        "raters_voting": int(votes.rater_id.nunique()),
        "raters_excluded": {r.rater: r.fails for r in excluded.itertuples()},
        "votes": {"total": len(votes), "used": len(kept), "real": len(real),
                  "catch": int((kept.kind == "catch").sum()), "repeats": int((kept.slot == "repeat").sum()),
                  "trials": int(kept.trial_id.nunique())},
        "design": {"catch_rate": settings["catch_rate"], "repeat_rate": settings["repeat_rate"],
                   "catch_types": [CATCH_DESCRIPTIONS[kind].format(**settings)
                                   for kind in sorted(set(pairs.catch_type.dropna()))],
                   "sampling": "adaptive (widest win-share interval first)" if settings["adaptive"] else "balanced",
                   "sides": "randomised per pair, alternating between showings, logged per trial",
                   "vote_rule": f"accepted only after {settings['dwell_factor']:g} × (left + right clip duration) "
                                "on the server clock since the trial was first shown",
                   "undo_seconds": settings["undo_seconds"]},
        "agreement": {r.criterion: {"pairwise_agreement": _round(r.pairwise_agreement),
                                    "krippendorff_alpha": None if r.too_few else _round(r.alpha),
                                    "fleiss_kappa": None if r.too_few else _round(r.kappa),
                                    "units": r.units, "too_few": bool(r.too_few)}
                      for r in report.agreement.itertuples()},
        "catch_pass": _round(float(np.nanmean(catch)) if len(catch) else math.nan),
        "catch_answers": len(catch),
        "comparisons": {"tested": int(report.shares.p.notna().sum()) if not report.shares.empty else 0,
                        "rows": len(report.shares), "adjustment": ADJUSTMENTS[HUMAN_ADJUSTMENT],
                        "alpha": alpha},
        "left_share": {r.criterion: _round(r.left_share) for r in report.side_bias.itertuples()},
        "statistics": "95% intervals that allow for votes clustering by prompt and by rater (two-way "
                      "cluster-robust variance, Cameron–Gelbach–Miller, t with min(prompts, raters) − 1 degrees of "
                      "freedom; Wilson where no prompt or rater voted twice in a row of a table) on win / tie / loss "
                      "shares, decisive win shares (ties left out), Davidson Bradley–Terry ratings (ties modelled) "
                      "and Arena-style Bradley–Terry ratings (ties as half wins, base 10, scale 400, anchor "
                      f"{settings['models'][0]} = 1000)",
    }


def _round(value: float, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), digits)


# -- text ------------------------------------------------------------------------------------------------------------

TOO_FEW = "too few"
INTERVAL_LABELS = {stats.WILSON: "Wilson", stats.TWO_WAY: "prompts × raters", stats.PROMPTS_ONLY: "prompts (1 rater)",
                   stats.RATERS_ONLY: "raters (1 prompt)", stats.NONE: "–"}
VERDICT_LABELS = {A_BETTER: "first better", B_BETTER: "second better", "no_difference": "no difference",
                  INSUFFICIENT: TOO_FEW}


def percent(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "–"
    interval = f" [{low * 100:.1f}, {high * 100:.1f}]" if not math.isnan(low) else f" [{TOO_FEW}]"
    return f"{value * 100:.1f}{interval}"


def interval_label(kind: str, too_few: bool) -> str:
    return INTERVAL_LABELS.get(kind, kind) + (f" ({TOO_FEW})" if too_few else "")


def paper_table(shares: pd.DataFrame, criterion: str, languages: list[str] | None = None) -> pd.DataFrame:
    """The paper's layout: one row per matchup (and language), win / tie / loss % of all votes and the decisive win
    share (ties left out) % [95% CI], votes, raters, prompts, which interval, and the Holm-adjusted verdict."""
    rows = shares[shares.criterion == criterion]
    if languages is not None:
        rows = rows[rows.language.isin(languages)]
    return pd.DataFrame({
        "matchup": rows.matchup, "language": rows.language,
        **{result: [percent(r[result], r[f"{result}_low"], r[f"{result}_high"]) for _, r in rows.iterrows()]
           for result in stats.RESULTS},
        "decisive win": [percent(r.decisive_win, r.decisive_win_low, r.decisive_win_high) for r in rows.itertuples()],
        "votes": rows.n, "raters": rows.raters, "prompts": rows.prompts,
        "interval": [interval_label(r.interval, r.too_few) for r in rows.itertuples()],
        "verdict (Holm)": [VERDICT_LABELS.get(r.verdict, r.verdict) for r in rows.itertuples()],
    }).reset_index(drop=True)


def comparisons_text(p: dict[str, Any]) -> str:
    c = p["comparisons"]
    return (f"Verdicts (does the first model win more often than it loses, or less often?): {c['tested']} "
            f"comparisons tested "
            f"(criteria × matchups × languages, `all` included; {c['rows'] - c['tested']} with too few prompts or "
            f"raters not tested), adjusted by {c['adjustment']} at α = {c['alpha']:g}")


def protocol_text(report: StudyReport) -> str:
    p = report.protocol
    votes, design = p["votes"], p["design"]
    agreement = "; ".join(
        f"{CRITERION_LABELS.get(c, c).lower()}: {_text(a['pairwise_agreement'], percent=True)} pairwise, "
        + (f"Krippendorff's α and Fleiss' κ {TOO_FEW} ({a['units']} pairs rated by ≥ 2 raters)" if a["too_few"]
           else f"Krippendorff's α = {_text(a['krippendorff_alpha'])}, Fleiss' κ = {_text(a['fleiss_kappa'])} "
                f"({a['units']} pairs rated by ≥ 2 raters)") for c, a in p["agreement"].items())
    excluded = (f"; {len(p['raters_excluded'])} excluded for failing quality checks"
                if p["raters_excluded"] else "")
    return (
        f"Blind pairwise study ({p['created']}) of {', '.join(p['models'])} on {p['prompts']} prompts of the "
        f"`{p['suite']}` suite in {len(p['languages'])} languages ({', '.join(p['languages'])}), generation seed "
        f"{p['generation_seed']}. {p['raters_voting']} raters (of {p['raters_invited']} invited{excluded}) cast "
        f"{votes['used']} votes on {votes['trials']} trials: {votes['real']} on {p['pairs_rated']} real pairs, "
        f"{votes['catch']} on catch trials ({', '.join(design['catch_types'])}; about "
        f"{design['catch_rate']:.0%} of trials) and {votes['repeats']} on repeated pairs with sides swapped. "
        f"Pair sampling: {design['sampling']}; sides {design['sides']}; a vote was {design['vote_rule']}. "
        f"Criteria: {', '.join(CRITERION_LABELS.get(c, c).lower() for c in p['criteria'])}, each left / tie / "
        f"right. Inter-rater agreement — {agreement or 'not measurable (no pair rated twice)'}. Catch-trial pass "
        f"rate {_text(p['catch_pass'], percent=True)} (n = {p['catch_answers']}). {p['statistics']}. "
        f"{comparisons_text(p)}.")


def _text(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def rate_text(rate: float, n: int, low: float | None = None, high: float | None = None) -> str:
    """A rate with the number of answers behind it: `90% [74, 97] (n=12)`; `– (n=0)` without answers."""
    if n == 0 or math.isnan(rate):
        return f"– (n={n})"
    interval = f" [{low * 100:.0f}, {high * 100:.0f}]" if low is not None and not math.isnan(low) else ""
    return f"{rate:.0%}{interval} (n={n})"


def rater_table(raters: pd.DataFrame) -> pd.DataFrame:
    """The raters for reading: every rate with its n, and `status`: revoked and / or why they fail the checks."""
    return pd.DataFrame({
        "rater": raters.rater, "votes": raters.votes, "trials": raters.trials,
        "catch pass": [rate_text(r.catch_pass, r.catch_answers, r.catch_low, r.catch_high)
                       for r in raters.itertuples()],
        "self-consistency": [rate_text(r.self_consistency, r.repeat_answers) for r in raters.itertuples()],
        "left share": [rate_text(r.left_share, r.decisive) for r in raters.itertuples()],
        "status": ["; ".join(part for part in ("revoked" if r.revoked else "", r.fails) if part) or "ok"
                   for r in raters.itertuples()],
    })


def agreement_table(agreement: pd.DataFrame) -> pd.DataFrame:
    """Inter-rater agreement for reading: α and κ print "too few" below `stats.MIN_AGREEMENT_UNITS` pairs."""
    def number(value: float, too_few: bool) -> str:
        return TOO_FEW if too_few else "–" if math.isnan(value) else f"{value:.3f}"

    return pd.DataFrame({
        "criterion": agreement.criterion, "pairs rated twice": agreement.units, "raters": agreement.raters,
        "pairwise agreement": [rate_text(r.pairwise_agreement, r.units) for r in agreement.itertuples()],
        "Krippendorff's α": [number(r.alpha, r.too_few) for r in agreement.itertuples()],
        "Fleiss' κ": [number(r.kappa, r.too_few) for r in agreement.itertuples()],
    })


def metric_agreement_table(agreement: pd.DataFrame) -> pd.DataFrame:
    """Metric–human agreement for reading, best first per criterion and language: metric ties counted as half."""
    rows = agreement.sort_values(["criterion", "language", "agreement"], ascending=[True, True, False])
    return pd.DataFrame({
        "metric": rows.metric, "criterion": rows.criterion, "language": rows.language,
        "agreement % (metric ties ½)": [percent(r.agreement, r.low, r.high) for r in rows.itertuples()],
        "decisive votes": rows.decisive, "metric ties": rows.metric_ties,
        "with human ties %": [f"{r.agreement_with_ties * 100:.1f}" if not math.isnan(r.agreement_with_ties)
                              else "–" for r in rows.itertuples()],
        "votes": rows.with_ties, "interval": [interval_label(r.interval, r.too_few) for r in rows.itertuples()],
    })


def to_markdown(report: StudyReport) -> str:
    lines = [f"# Human review: {' vs '.join(report.settings['models'])}", "", "## Protocol", "",
             protocol_text(report), ""]
    lines += [f"> {note}" for note in report.notes]
    if report.empty:
        return "\n".join(lines + ["No votes yet."]) + "\n"
    for criterion in report.settings["criteria"]:
        label = CRITERION_LABELS.get(criterion, criterion)
        lines += [f"## {label}", "", "Win / tie / loss of the first model among all votes, and its decisive win share "
                  "(ties left out), % [95% CI; `interval` says which]:", "",
                  paper_table(report.shares, criterion).to_markdown(index=False), ""]
        for name, frame in (("Davidson Bradley–Terry (ties modelled)", report.davidson),
                            ("Arena-style Bradley–Terry (ties as half wins)", report.arena)):
            mine = frame[frame.criterion == criterion] if not frame.empty else frame
            if not mine.empty:
                lines += [f"{name}, rating [95% CI, clustered by prompt and rater]:", "",
                          ratings_table(mine).to_markdown(index=False), ""]
    sections = (("Inter-rater agreement", agreement_table(report.agreement) if not report.agreement.empty
                 else report.agreement), ("Left-side bias", report.side_bias),
                ("Raters", rater_table(report.raters) if not report.raters.empty else report.raters),
                ("Votes to separate the models", report.power),
                ("Which automatic metric agrees with people", metric_agreement_table(report.metric_agreement)
                 if not report.metric_agreement.empty else report.metric_agreement))
    for title, frame in sections:
        if not frame.empty:
            lines += [f"## {title}", "", frame.to_markdown(index=False, floatfmt=".3f"), ""]
    return "\n".join(lines) + "\n"


def ratings_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Ratings as "value [low, high]"; the first model anchors the scale (1000, no interval); an interval from
    fewer than `stats.MIN_CLUSTERS` prompts or raters is marked "too few", a missing one says so."""
    cells = []
    for index, row in enumerate(frame.itertuples()):
        if math.isnan(row.rating):
            cells.append("– (won or lost every decisive vote)")
        elif index == 0:
            cells.append(f"{row.rating:.0f} (anchor)")
        elif math.isnan(row.low):
            cells.append(f"{row.rating:.0f} [{TOO_FEW}]")
        else:
            cells.append(f"{row.rating:.0f} [{row.low:.0f}, {row.high:.0f}]"
                         + (f" ({TOO_FEW}: {row.prompts} prompts, {row.raters} raters)" if row.too_few else ""))
    return pd.DataFrame({"model": frame.model.to_numpy(), "rating": cells})


def to_json(report: StudyReport) -> dict[str, Any]:
    def records(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records", force_ascii=False)) if not frame.empty else []

    return {"protocol": report.protocol, "protocol_text": protocol_text(report), "notes": report.notes,
            "intervals": stats.INTERVALS,
            **{name: records(getattr(report, name)) for name in (
                "shares", "davidson", "arena", "agreement", "side_bias", "raters", "power", "metric_agreement")}}


def print_report(report: StudyReport, console=None) -> None:
    from rich.table import Table

    from mheval.report import make_console

    console = console or make_console(wide=True)   # the study tables are wider than the run report's 100 columns
    console.print(protocol_text(report), highlight=False)
    for note in report.notes:
        console.print(note, style="yellow", markup=False)
    if report.empty:
        console.print("[yellow]no votes yet[/yellow]")
        return
    for index, criterion in enumerate(report.settings["criteria"]):
        frame = paper_table(report.shares, criterion, None if index == 0 else [ALL])
        table = Table(title=f"{CRITERION_LABELS.get(criterion, criterion)} — win / tie / loss of the first model, "
                            "decisive win share (ties left out), % [95% CI]")
        for column in frame.columns:
            table.add_column(column, justify="right" if column in ("votes", "raters", "prompts") else "left")
        for row in frame.itertuples(index=False):
            table.add_row(*map(str, row))
        console.print(table)
        ratings = report.davidson[report.davidson.criterion == criterion]
        console.print("Davidson BT [95% CI, clustered]: " + ", ".join(
            f"{m} {t}" for m, t in ratings_table(ratings).itertuples(index=False)), highlight=False)
    raters = report.raters
    flagged = rater_table(raters[raters.revoked | (raters.fails != "")]) if not raters.empty else raters
    for row in flagged.to_dict("records"):
        console.print(f"rater {row['rater']}: {row['status']} (catch pass {row['catch pass']}, self-consistency "
                      f"{row['self-consistency']})", style="red", highlight=False, markup=False)
    if not report.metric_agreement.empty:
        best = report.metric_agreement[report.metric_agreement.language == ALL].sort_values(
            "agreement", ascending=False)
        console.print("metric–human agreement (decisive votes, metric ties as half, all languages): " + ", ".join(
            f"{r.metric}/{r.criterion} {percent(r.agreement, r.low, r.high)} (n={r.decisive}, {r.metric_ties} "
            f"metric ties)" for r in best.head(6).itertuples()), highlight=False)
