"""The dashboard's "Human review" page: the results of the studies made from a run (`RUN_DIR/studies/*`), drawn
from the same `mheval.review.report.StudyReport` as `mheval review report`, with the votes and raters behind every
number."""
from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from mheval.review.report import (StudyReport, agreement_table, build_report, paper_table, protocol_text,
                                  rater_table, ratings_table)
from mheval.review.stats import ALL
from mheval.review.storage import CRITERION_LABELS, DATABASE, StudyStore

STUDIES = "studies"   # `mheval review create` puts a run's studies here by default


def find_studies(run_dir: Path) -> list[Path]:
    return sorted(path.parent for path in (run_dir / STUDIES).glob(f"*/{DATABASE}"))


def study_stamp(directory: Path) -> tuple:
    return tuple(path.stat().st_mtime_ns if path.exists() else 0
                 for path in (directory / DATABASE, directory / f"{DATABASE}-wal"))


@st.cache_data(show_spinner="computing the study's statistics…")
def load_report(directory: str, stamp: tuple, exclude_failing_raters: bool) -> StudyReport:
    """`stamp` (database modification times) recomputes the report when new votes arrive."""
    store = StudyStore(directory)
    try:
        return build_report(store, exclude_failing_raters=exclude_failing_raters)
    finally:
        store.close()


def share_chart_frame(report: StudyReport, criterion: str) -> pd.DataFrame:
    """Long table for the chart: matchup × language × result → share and its 95% interval, votes, raters."""
    rows = report.shares[(report.shares.criterion == criterion) & (report.shares.language != ALL)]
    return pd.concat([pd.DataFrame({"matchup": rows.matchup, "language": rows.language, "result": result,
                                    "share": rows[result], "low": rows[f"{result}_low"],
                                    "high": rows[f"{result}_high"], "votes": rows.n, "raters": rows.raters})
                      for result in ("win", "tie", "loss")], ignore_index=True)


def share_chart(frame: pd.DataFrame) -> alt.FacetChart:
    base = alt.Chart(frame).encode(
        x=alt.X("language:N", axis=alt.Axis(labelAngle=0)), xOffset="matchup:N",
        color=alt.Color("matchup:N", legend=alt.Legend(orient="top", title=None)))
    bars = base.mark_bar().encode(
        y=alt.Y("share:Q", title="share of votes", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=["matchup", "language", "result", alt.Tooltip("share:Q", format=".1%"),
                 alt.Tooltip("low:Q", format=".1%"), alt.Tooltip("high:Q", format=".1%"), "votes", "raters"])
    whiskers = base.mark_rule(color="black").encode(y="low:Q", y2="high:Q")
    return alt.layer(bars, whiskers, data=frame).facet(
        column=alt.Column("result:N", sort=["win", "tie", "loss"], title="first model's result"))


def page(run_dir: Path) -> None:
    studies = find_studies(run_dir)
    if not studies:
        st.info("No study in this run: mheval has no human-review study for this run directory, so there are no "
                f"pairwise preferences to show. Make one with `mheval review create {run_dir} --models A,B`.")
        return
    left, right = st.columns([3, 1])
    chosen = left.selectbox("study", [path.name for path in studies], key="review_study")
    exclude = right.toggle("exclude failing raters", value=False, key="review_exclude")
    directory = studies[[path.name for path in studies].index(chosen)]
    report = load_report(str(directory), study_stamp(directory), exclude)
    protocol = report.protocol
    votes = protocol["votes"]
    excluded = protocol["raters_excluded"]
    st.markdown(f"**{votes['used']} votes from {protocol['raters_voting'] - len(excluded)} raters** "
                f"({votes['real']} on real pairs, {votes['catch']} on catch trials, {votes['repeats']} repeats) · "
                f"{protocol['prompts']} prompts in {', '.join(protocol['languages'])} · models "
                f"{', '.join(protocol['models'])}"
                + (f" · excluded: {', '.join(f'{name} ({why})' for name, why in excluded.items())}" if excluded else ""))
    if report.empty:
        st.info("No votes yet. Invite raters with `mheval review invite STUDY --name NAME` and serve the study "
                "with `mheval review serve STUDY`.")
        return
    criteria = report.settings["criteria"]
    criterion = st.selectbox("criterion", criteria, format_func=CRITERION_LABELS.get, key="review_criterion")
    st.subheader("Win / tie / loss of the first model")
    st.dataframe(paper_table(report.shares, criterion), hide_index=True, width="stretch")
    st.caption("Shares of votes on real pairs (first showings), % [95% interval, clustered by prompt and rater; "
               "`interval` says which]; `votes`, `raters` and "
               "`prompts` say how many stand behind each row. A row with few votes has a wide interval.")
    st.altair_chart(share_chart(share_chart_frame(report, criterion)), width="stretch")
    st.caption("Per language: bars are shares, whiskers 95% intervals; hover for votes and raters.")
    left, right = st.columns(2)
    for column, title, frame in ((left, "Davidson Bradley–Terry (ties modelled)", report.davidson),
                                 (right, "Arena-style Bradley–Terry (ties as half wins)", report.arena)):
        column.markdown(f"**{title}**, rating [95% CI, clustered by prompt and rater]")
        column.dataframe(ratings_table(frame[frame.criterion == criterion]), hide_index=True, width="stretch")
    st.subheader("Can the result be trusted?")
    st.dataframe(agreement_table(report.agreement), hide_index=True, width="stretch")
    st.dataframe(report.side_bias, hide_index=True, width="stretch")
    st.markdown("**Raters** (catch-trial pass rate, self-consistency on repeated pairs with sides swapped)")
    st.dataframe(rater_table(report.raters), hide_index=True, width="stretch")
    st.markdown("**Votes to separate the models** (two-sided 5% test, 80% power)")
    st.dataframe(report.power[report.power.criterion == criterion], hide_index=True, width="stretch")
    if not report.metric_agreement.empty:
        st.subheader("Which automatic metric agrees with people")
        mine = report.metric_agreement[report.metric_agreement.criterion == criterion]
        st.dataframe(mine, hide_index=True, width="stretch")
        st.caption("Share of decisive human votes whose winner the metric also prefers, a metric tie counting "
                   "half (`metric_ties`) [95%, clustered]; "
                   "`agreement_with_ties` is over all votes: a human tie agrees only with a metric tie.")
    for note in report.notes:
        st.caption(note)
    with st.expander("protocol (for a paper)"):
        st.write(protocol_text(report))
