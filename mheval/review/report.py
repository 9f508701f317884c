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


CATCH_DESCRIPTIONS = {"audio_shift": "audio shifted {shift_ms:g} ms vs in sync", "frozen_video": "frozen video vs the "
                      "original", "identical": "identical clips"}


@dataclass
class StudyReport:
    settings: dict[str, Any]
    shares: pd.DataFrame              # criterion × matchup × language: win/tie/loss with Wilson intervals
    davidson: pd.DataFrame            # criterion × model: Davidson rating, bootstrap interval
    arena: pd.DataFrame               # criterion × model: Arena-style rating, bootstrap interval
    agreement: pd.DataFrame           # criterion: Krippendorff α, Fleiss κ
    side_bias: pd.DataFrame           # criterion: left share of decisive votes
    raters: pd.DataFrame              # rater: catch pass, self-consistency, flags
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
                 bars: RaterBars = RaterBars(), run_dir: Path | None = None) -> StudyReport:
    settings = store.settings()
    models = list(settings["models"])
    votes = stats.outcomes(store.votes())
    rater_table = stats.raters(votes, bars) if not votes.empty else pd.DataFrame()
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
        shares=stats.shares(real) if not real.empty else pd.DataFrame(),
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
    report.protocol = protocol(store, votes, kept, report, excluded if exclude_failing_raters else excluded.iloc[:0])
    return report


def protocol(store: StudyStore, votes: pd.DataFrame, kept: pd.DataFrame, report: StudyReport,
             excluded: pd.DataFrame) -> dict[str, Any]:
    settings = store.settings()
    items, pairs, invited = store.items(), store.pairs(), store.raters()
    real = kept[(kept.kind == "real") & (kept.slot != "repeat")]
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
                                    "krippendorff_alpha": _round(r.alpha), "fleiss_kappa": _round(r.kappa),
                                    "units": r.units} for r in report.agreement.itertuples()},
        "catch_pass": _round(float(np.nanmean(stats.expected_correct(votes))) if len(votes) else math.nan),
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

def percent(value: float, low: float, high: float) -> str:
    return "–" if math.isnan(value) else f"{value * 100:.1f} [{low * 100:.1f}, {high * 100:.1f}]"


def paper_table(shares: pd.DataFrame, criterion: str, languages: list[str] | None = None) -> pd.DataFrame:
    """The paper's layout: one row per matchup (and language), win / tie / loss % [95% CI], votes, raters."""
    rows = shares[shares.criterion == criterion]
    if languages is not None:
        rows = rows[rows.language.isin(languages)]
    return pd.DataFrame({
        "matchup": rows.matchup, "language": rows.language,
        **{result: [percent(r[result], r[f"{result}_low"], r[f"{result}_high"]) for _, r in rows.iterrows()]
           for result in stats.RESULTS},
        "votes": rows.n, "raters": rows.raters, "prompts": rows.prompts,
    }).reset_index(drop=True)


def protocol_text(report: StudyReport) -> str:
    p = report.protocol
    votes, design = p["votes"], p["design"]
    agreement = "; ".join(
        f"{CRITERION_LABELS.get(c, c).lower()}: {_text(a['pairwise_agreement'], percent=True)} pairwise, "
        f"Krippendorff's α = {_text(a['krippendorff_alpha'])}, Fleiss' κ = {_text(a['fleiss_kappa'])} "
        f"({a['units']} pairs rated by ≥ 2 raters)" for c, a in p["agreement"].items())
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
        f"rate {_text(p['catch_pass'], percent=True)}. {p['statistics']}.")


def _text(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def to_markdown(report: StudyReport) -> str:
    lines = [f"# Human review: {' vs '.join(report.settings['models'])}", "", "## Protocol", "",
             protocol_text(report), ""]
    lines += [f"> {note}" for note in report.notes]
    if report.empty:
        return "\n".join(lines + ["No votes yet."]) + "\n"
    for criterion in report.settings["criteria"]:
        label = CRITERION_LABELS.get(criterion, criterion)
        lines += [f"## {label}", "", "Win / tie / loss of the first model, % [Wilson 95% CI]:", "",
                  paper_table(report.shares, criterion).to_markdown(index=False), ""]
        for name, frame in (("Davidson Bradley–Terry (ties modelled)", report.davidson),
                            ("Arena-style Bradley–Terry (ties as half wins)", report.arena)):
            mine = frame[frame.criterion == criterion] if not frame.empty else frame
            if not mine.empty:
                lines += [f"{name}, rating [95% bootstrap CI]:", "", ratings_table(mine).to_markdown(index=False), ""]
    sections = (("Inter-rater agreement", report.agreement), ("Left-side bias", report.side_bias),
                ("Raters", report.raters), ("Votes to separate the models", report.power),
                ("Which automatic metric agrees with people", report.metric_agreement))
    for title, frame in sections:
        if not frame.empty:
            lines += [f"## {title}", "", frame.to_markdown(index=False, floatfmt=".3f"), ""]
    return "\n".join(lines) + "\n"


def ratings_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Ratings as "value [low, high]"; the first model anchors the scale (1000, no interval)."""
    cells = []
    for index, (rating, low, high) in enumerate(zip(frame.rating, frame.low, frame.high)):
        if math.isnan(rating):
            cells.append("– (won or lost every decisive vote)")
        elif index == 0:
            cells.append(f"{rating:.0f} (anchor)")
        else:
            cells.append(f"{rating:.0f} [{low:.0f}, {high:.0f}]" if not math.isnan(low) else f"{rating:.0f}")
    return pd.DataFrame({"model": frame.model.to_numpy(), "rating": cells})


def to_json(report: StudyReport) -> dict[str, Any]:
    def records(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records", force_ascii=False)) if not frame.empty else []

    return {"protocol": report.protocol, "protocol_text": protocol_text(report), "notes": report.notes,
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
                            "% [95% CI]")
        for column in frame.columns:
            table.add_column(column, justify="right" if column in ("votes", "raters", "prompts") else "left")
        for row in frame.itertuples(index=False):
            table.add_row(*map(str, row))
        console.print(table)
        ratings = report.davidson[report.davidson.criterion == criterion]
        console.print("Davidson BT: " + ", ".join(f"{m} {t}" for m, t in ratings_table(ratings).itertuples(
            index=False)), highlight=False)
    flagged = report.raters[report.raters.fails != ""] if not report.raters.empty else report.raters
    for row in flagged.itertuples():
        console.print(f"[red]rater {row.rater}[/red]: {row.fails}")
    if not report.metric_agreement.empty:
        best = report.metric_agreement[report.metric_agreement.language == ALL].sort_values(
            "agreement", ascending=False)
        console.print("metric–human agreement (decisive votes, all languages): " + ", ".join(
            f"{r.metric}/{r.criterion} {percent(r.agreement, r.low, r.high)} (n={r.decisive})"
            for r in best.head(6).itertuples()), highlight=False)
