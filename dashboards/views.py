"""The dashboard's pages. Each takes the selected run and the list of loaded runs, and draws with Streamlit."""
from __future__ import annotations

import html
import json
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import data, review
from dashboards.data import RunView
from mheval.baselines import FAILED, IMPROVED, INSUFFICIENT, MIN_PROMPTS, PASS, REGRESSION, Tolerance
from mheval.languages import LANGUAGES
from mheval.metrics import NotApplicable, metric_class
from mheval.results import ALL, model_label, run_stamp
from mheval.status import Status

CHARACTER_LANGUAGES_NOTE = (
    f"{', '.join(c for c, lang in LANGUAGES.items() if lang.character_level)} are scored by characters: "
    "their WER column is a CER.")


@st.cache_data(show_spinner=False)
def load(directory: str, stamp: tuple) -> RunView:
    """`stamp` (modification times of the database files) makes a run that is still being written reload."""
    return data.load_run(directory)


def load_view(directory: Path) -> RunView:
    return load(str(directory), run_stamp(directory))


def header(view: RunView) -> bool:
    """Title, the run's state, its manifest and errors. False when there is nothing further to show."""
    st.title(view.name)
    manifest = view.manifest
    if manifest:
        git = manifest.get("git") or {}
        st.caption(f"{view.record.describe()} · models {', '.join(view.record.models)} · created "
                   f"{manifest.get('created')} · commit "
                   f"{(git.get('commit') or '?')[:10]}{' (dirty)' if git.get('dirty') else ''} · {view.directory}")
    state, message = view.state, view.message
    {"unreadable": st.error, "failed": st.error, "empty": st.info, "partial": st.warning}.get(
        state, lambda _: None)(message)
    if manifest:
        with st.expander("manifest.json (code version, packages, suite, adapter and metric configs, weights)"):
            st.download_button("download manifest.json", json.dumps(manifest, indent=2), file_name="manifest.json",
                               mime="application/json")
            st.json(manifest, expanded=2)
    if not view.errors.empty:
        with st.expander(f"errors ({len(view.errors)})", expanded=state == "failed"):
            st.dataframe(view.errors[["model", "item_id", "stage", "message"]], hide_index=True,
                         width="stretch")
    return state in ("ok", "partial")


def languages_of(view: RunView) -> list[str]:
    return sorted(view.table.language.dropna().unique())


# -- leaderboard -----------------------------------------------------------------------------------------------------

def leaderboard_page(view: RunView, runs: list[Path]) -> None:
    if not header(view):
        return
    st.header("Leaderboard")
    language = st.selectbox("language", [ALL, *languages_of(view)], key="leaderboard_language")
    board = data.leaderboard(view, language)
    values = [column for column in board.columns[1:] if not column.endswith("95% CI") and column != "notes"]
    left, right = st.columns([3, 1])
    primary = data.column_label("wer") if "wer" in view.metrics else values[0]
    sort_by = left.selectbox("sort by", values, key="leaderboard_sort", index=values.index(primary))
    metric = next((name for name in view.metrics if data.column_label(name) == sort_by), None)
    best_first = right.toggle("best first", value=True, key="leaderboard_best_first")
    if metric:   # best first = lowest ranking value (distance to the ideal for sync's signed offset)
        rank = metric_class(metric).ranking_values
        board = board.sort_values(sort_by, key=lambda column: pd.Series(rank(column), index=column.index),
                                  ascending=best_first, na_position="last")
    else:
        board = board.sort_values(sort_by, ascending=not best_first, na_position="last")
    st.dataframe(data.leaderboard_text(board), hide_index=True, width="stretch",
                 column_config={"model": st.column_config.TextColumn(pinned=True)})
    st.caption("Each metric's headline value [95% bootstrap interval over prompts] (↓ lower is better, ↑ higher is "
               "better, →0 closest to 0 is best); sort with “sort by”. WER is corpus-level (edits over reference "
               f"words). {CHARACTER_LANGUAGES_NOTE} Language “all” is the mean over languages (each counts once), on the "
               "prompts every model has. Notes: n<5 = fewer than 5 prompts, so the interval is little more than the "
               "range of the values; yue→zh ASR = Cantonese transcribed by a decoder without Cantonese (Mandarin).")
    for label in data.absent_paper_columns(view):
        st.caption(f"{label}: no metric for it in this run.")
    for name, reason in view.unavailable.items():
        st.caption(f"{name}: unavailable: {reason}")
    for name in view.unregistered:
        st.caption(f"{name}: scored in this run by a metric this installation does not know; not shown.")


# -- per language ----------------------------------------------------------------------------------------------------

def languages_page(view: RunView, runs: list[Path]) -> None:
    if not header(view):
        return
    st.header("By language")
    if not view.metrics:
        st.info("No metric has scores in this run.")
        return
    metric = st.selectbox("metric", view.metrics, format_func=data.column_label, key="language_metric",
                          index=view.metrics.index("wer") if "wer" in view.metrics else 0)
    frame = data.by_language(view, metric).dropna(subset=["value"])
    if frame.empty:
        st.info(f"{metric} has no values in this run (see the leaderboard for why).")
        return
    label = data.column_label(metric)
    base = alt.Chart(frame).encode(
        x=alt.X("language:N", title="language", axis=alt.Axis(labelAngle=0)), xOffset="model:N", color=alt.Color("model:N", title="model"))
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title=label),
        tooltip=["model", "language", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("ci_low:Q", format=".3f"),
                 alt.Tooltip("ci_high:Q", format=".3f"), "n"])
    whiskers = base.mark_rule(color="black").encode(y="ci_low:Q", y2="ci_high:Q")
    st.altair_chart(bars + whiskers, width="stretch", height=380)
    st.caption(f"Bars: {label}; whiskers: 95% bootstrap interval over prompts (none with a single prompt). "
               f"{CHARACTER_LANGUAGES_NOTE if metric == 'wer' else ''}")
    table = frame.assign(**{"95% CI": [data.interval_text(lo, hi) for lo, hi in zip(frame.ci_low, frame.ci_high)]})
    st.dataframe(table.drop(columns=["ci_low", "ci_high"]), hide_index=True, width="stretch")


# -- drill-down ------------------------------------------------------------------------------------------------------

DIFF_STYLE = {"substitute": "background:#fde68a", "delete": "background:#fecaca;text-decoration:line-through",
              "insert": "background:#bbf7d0"}


def diff_lines(tokens: list[data.AlignedToken], unit: str) -> tuple[str, str]:
    """HTML for the reference line (deletions and substitutions marked) and the transcript line (insertions and
    substitutions marked)."""
    join = "" if unit == "character" else " "

    def mark(text: str, kind: str) -> str:
        return f'<span style="{DIFF_STYLE[kind]}">{html.escape(text)}</span>' if kind != "equal" else html.escape(text)

    reference = join.join(mark(t.reference, t.kind) for t in tokens if t.kind != "insert")
    transcript = join.join(mark(t.transcript, t.kind) for t in tokens if t.kind != "delete")
    return reference, transcript


def drilldown_page(view: RunView, runs: list[Path]) -> None:
    if not header(view):
        return
    st.header("Drill-down per prompt")
    items = view.table.drop_duplicates("item_id").sort_values(["language", "item_id"])
    labels = {row.item_id: f"{row.item_id} ({row.language})" for row in items.itertuples()}
    wanted = st.query_params.get("item")
    item_id = st.selectbox("prompt", list(labels), format_func=labels.get, key="drilldown_item",
                           index=list(labels).index(wanted) if wanted in labels else 0)
    clips = view.table[view.table.item_id == item_id].sort_values("model")
    st.markdown(f"**Reference line:** {html.escape(str(clips.reference_text.iloc[0]))}")
    rows = [row for _, row in clips.iterrows()]
    for column, row in side_by_side(rows):
        with column:
            clip_panel(view, row)
    st.subheader("Every metric value")
    st.dataframe(data.metric_values(clips, view.metrics), hide_index=True, width="stretch")
    if "sync" in view.metrics:
        st.subheader("Waveform, mouth opening and speech level")
        for column, row in side_by_side(rows):
            path = view.clip_path(row)
            if row["clip_status"] == Status.OK and path is not None and path.exists():
                with column:
                    sync_panel(path, row, view.results.metric_config("sync"))


def side_by_side(rows: list[pd.Series]):
    """Up to three clips per row of columns; at least two columns, so a single clip is not drawn page-wide."""
    for start in range(0, len(rows), 3):
        yield from zip(st.columns(max(2, min(3, len(rows)))), rows[start:start + 3])


def clip_panel(view: RunView, row: pd.Series) -> None:
    st.subheader(model_label(row["model"], view.notices))
    if row["clip_status"] != Status.OK:
        st.error(f"no clip: {row['clip_error']}")
        return
    path = view.clip_path(row)
    if path is None or not path.exists():
        st.error(f"clip file missing: {path}")
        return
    st.video(str(path))
    transcript_panel(row)
    if row.get("sync.status") == Status.OK:
        st.markdown(f"**measured sync offset: {row['sync.offset_ms']:+.0f} ms** ({row['sync.offset_frames']:+.2f} "
                    f"frames; > 0: audio lags video) · confidence {row.get('sync.confidence', float('nan')):.2f}")


def transcript_panel(row: pd.Series) -> None:
    detail = data.detail_of(row, "wer")
    if detail is None:
        st.caption("no transcript (WER not scored for this clip)")
        return
    unit = detail.unit
    tokens = data.align(detail.reference_normalized, detail.transcript_normalized, unit)
    reference, transcript = diff_lines(tokens, unit)
    st.markdown(
        f"<div style='line-height:1.8'><b>reference</b> (normalised): {reference}<br>"
        f"<b>transcript</b> (normalised): {transcript}<br>"
        f"<small>raw transcript: {html.escape(detail.transcript)} · by {html.escape(str(detail.asr.name))} "
        f"({unit}s; <span style='{DIFF_STYLE['substitute']}'>substituted</span> "
        f"<span style='{DIFF_STYLE['delete']}'>deleted</span> "
        f"<span style='{DIFF_STYLE['insert']}'>inserted</span>)</small></div>", unsafe_allow_html=True)


@st.cache_data(show_spinner=False)
def _sync_curves(path: str, stamp: int, offset_ms: float | None, config: dict | None) -> pd.DataFrame | str:
    try:
        return data.sync_curves(Path(path), offset_ms, config)
    except NotApplicable as reason:
        return str(reason)


@st.cache_data(show_spinner=False)
def _waveform(path: str, stamp: int) -> pd.DataFrame:
    from mheval.media import ASR_SAMPLE_RATE, read_audio

    return data.waveform(read_audio(path, ASR_SAMPLE_RATE), ASR_SAMPLE_RATE)


def sync_panel(path: Path, row: pd.Series, config: dict | None) -> None:
    """Waveform, mouth and speech curves (with the run's sync settings `config`) and the lag correlations."""
    st.markdown(f"**{row['model']}**")
    status, offset_frames = row.get("sync.status"), row.get("sync.offset_frames")
    if status != Status.OK:
        st.caption(f"sync: {status} {data.reason_text(row, 'sync')}")
    stamp = path.stat().st_mtime_ns
    wave = _waveform(str(path), stamp)
    st.altair_chart(alt.Chart(wave).mark_area(opacity=0.7).encode(
        x=alt.X("seconds:Q"), y=alt.Y("peak:Q", title="waveform"), y2="trough:Q"), width="stretch", height=140)
    curves = _sync_curves(str(path), stamp, row.get("sync.offset_ms") if status == Status.OK else None, config)
    if isinstance(curves, str):
        st.caption(f"mouth-opening curve not available: {curves}")
        return
    long = curves.melt("seconds", var_name="signal", value_name="level (scaled)")
    st.altair_chart(alt.Chart(long).mark_line().encode(
        x="seconds:Q", y="level (scaled):Q", color=alt.Color("signal:N", legend=alt.Legend(orient="top", title=None)),
        strokeDash=alt.condition(alt.datum.signal == "speech − offset", alt.value([4, 3]), alt.value([1, 0])),
    ), width="stretch", height=220)
    detail = data.detail_of(row, "sync")
    correlations = detail.correlations if detail is not None else None
    if correlations:
        half = len(correlations) // 2
        frame = pd.DataFrame({"lag (frames)": range(-half, half + 1), "correlation": correlations})
        line = alt.Chart(frame).mark_line(point=True).encode(
            x="lag (frames):Q", y=alt.Y("correlation:Q", title="mouth–speech correlation"))
        peak = alt.Chart(pd.DataFrame({"lag (frames)": [offset_frames]})).mark_rule(color="red").encode(
            x="lag (frames):Q")
        st.altair_chart(line + peak, width="stretch", height=180)


# -- run comparison --------------------------------------------------------------------------------------------------

def compare_page(view: RunView, runs: list[Path]) -> None:
    st.title("Compare two runs")
    if len(runs) < 2:
        st.info("Load two runs of the same suite to compare them: `mheval dashboard runs/before runs/after`.")
        return
    names = [str(path) for path in runs]
    left, right = st.columns(2)
    before = left.selectbox("A: before (baseline)", names, index=0, key="compare_a")
    after = right.selectbox("B: after", names, index=1, key="compare_b")
    base, new = load_view(Path(before)), load_view(Path(after))
    for side in (base, new):
        if side.state not in ("ok", "partial"):
            st.warning(side.message)
            return
    if before == after:
        st.info("Pick two different runs.")
        return
    if base.suite != new.suite:
        st.warning(f"These runs used different suites ({base.suite} vs {new.suite}); only runs on the same suite "
                   "can be compared prompt by prompt.")
        return
    left, right = st.columns(2)
    tolerance = Tolerance(left.number_input("tolerance: absolute", 0.0, value=Tolerance.absolute, step=0.01),
                          right.number_input("tolerance: relative", 0.0, value=Tolerance.relative, step=0.05))
    table, refused = data.compare_runs(base, new, tolerance)
    for metric, reason in refused.items():
        st.warning(f"{metric}: not compared: {reason}")
    if table.empty:
        st.info("No metric was scored comparably in both runs.")
        return
    regressions = table[table.result.isin([REGRESSION, FAILED])]
    if len(regressions):
        st.error(f"{len(regressions)} regression(s): " + ", ".join(
            f"{r.metric} {r.model}/{r.language}" for r in regressions.itertuples()))
    else:
        st.success("No regression beyond the tolerance with 95% confidence.")
    columns = st.columns(2)
    for index, (metric, rows) in enumerate(table.groupby("metric", sort=False)):
        with columns[index % 2]:
            st.markdown(f"**{metric}**: change B − A with 95% interval")
            st.altair_chart(change_chart(rows), width="stretch", height=max(140, 30 * len(rows)))
    shown = table.drop(columns=["ci_low", "ci_high"])
    shown.insert(shown.columns.get_loc("change") + 1, "95% CI",
                 [data.interval_text(low, high) for low, high in zip(table.ci_low, table.ci_high)])
    styled = shown.style.apply(lambda row: ["background-color:#fecaca" if row.result in (REGRESSION, FAILED) else
                                            "background-color:#dcfce7" if row.result == IMPROVED else ""] * len(row),
                               axis=1).format(precision=3, na_rep="–")
    st.dataframe(styled, hide_index=True, width="stretch")
    st.caption("change = B − A on the prompts both runs share, paired bootstrap over prompts (95%); a regression is "
               "a change for the worse beyond max(absolute, relative × A) whose interval excludes 0; a row of B "
               "whose clips have no usable score for A's prompts is failed; rows with fewer than "
               f"{MIN_PROMPTS} shared prompts are insufficient, not decided — the rules of `mheval gate`.")


def change_chart(rows: pd.DataFrame) -> alt.LayerChart:
    """One metric's changes per model and language: a point, its interval, and zero for reference."""
    frame = rows.assign(row=rows.model + " · " + rows.language)
    base = alt.Chart(frame).encode(
        y=alt.Y("row:N", title=None),
        color=alt.Color("result:N", scale=alt.Scale(domain=[PASS, REGRESSION, FAILED, IMPROVED, INSUFFICIENT],
                                                    range=["#6b7280", "#dc2626", "#dc2626", "#16a34a", "#d97706"])))
    points = base.mark_point(filled=True, size=70).encode(
        x=alt.X("change:Q", title="change B − A"),
        tooltip=["model", "language", alt.Tooltip("change:Q", format="+.3f"), "result"])
    intervals = base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q")
    zero = alt.Chart(pd.DataFrame({"change": [0.0]})).mark_rule(strokeDash=[3, 3], color="black").encode(x="change:Q")
    return zero + intervals + points


# -- verdicts --------------------------------------------------------------------------------------------------------

@st.cache_data(show_spinner="computing paired verdicts…")
def _verdicts(directory: str, stamp: tuple, fdr: bool):
    from mheval.compare_command import human_win_rates
    from mheval.verdicts import VerdictSettings, verdicts

    view = load(directory, stamp)
    table = verdicts(view.results, VerdictSettings(adjustment="fdr_bh" if fdr else "holm"))
    table.human = human_win_rates(view.directory, table.pairs())
    return table


def verdicts_page(view: RunView, runs: list[Path]) -> None:
    from mheval.verdicts import verdict_lines, verdict_table

    if not header(view):
        return
    st.header("Is A better than B?")
    if len(view.record.models) < 2 or not view.metrics:
        st.info("Verdicts compare two or more models of one run; this run has "
                f"{', '.join(view.record.models)} and {len(view.metrics)} scored metric(s).")
        return
    fdr = st.toggle("false discovery rate (Benjamini–Hochberg) instead of family-wise (Holm)", key="verdicts_fdr")
    table = _verdicts(str(view.directory), run_stamp(view.directory), fdr)
    pairs = table.pairs()
    pair = st.selectbox("pair", pairs, format_func=lambda p: f"A = {p[0]}  vs  B = {p[1]}", key="verdicts_pair")
    lines = {tuple(line.split(": ", 1)[0].split(" vs ")): line for line in verdict_lines(table)}
    st.markdown(f"**{lines.get(pair, '')}**")
    only_decided = st.toggle("only the rows where one is better, and the `all` rows", value=False,
                             key="verdicts_decided")
    rows = verdict_table(table, pair)
    if only_decided:
        rows = rows[rows.verdict.isin(["a better", "b better"]) | (rows.language == ALL)]
    st.dataframe(rows.drop(columns=["A", "B"]), hide_index=True, width="stretch")
    st.caption(table.statement() + ". Δ is A − B in the metric's unit (sync: the distance of the offset to 0); "
               "“no difference” gives the prompts a paired test would need to detect the observed Δ with 80% power.")
    human = table.human
    if not human.empty:
        mine = human[(human.model_a == pair[0]) & (human.model_b == pair[1])]
        if not mine.empty:
            st.subheader("Human review of the same pair")
            st.dataframe(mine, hide_index=True, width="stretch")


# -- speed -----------------------------------------------------------------------------------------------------------

def speed_page(view: RunView, runs: list[Path]) -> None:
    if not header(view):
        return
    st.header("Speed")
    table = data.speed(view)
    if table.empty:
        st.info("No generated clip in this run carries timings.")
        return
    stages = [column for column in table.columns if column not in ("model", "resolution", "clips")]
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={column: st.column_config.NumberColumn(format="%.2f") for column in stages})
    st.caption("Seconds per 5-second clip (time × 5 s / clip duration), median over clips, per model and "
               "resolution: the paper's stages (text encoding, base, SR, decode, audio decode) where the adapter "
               "reports them, then its own stages, then total wall time.")


# -- human review ----------------------------------------------------------------------------------------------------

def review_page(view: RunView, runs: list[Path]) -> None:
    if not header(view):
        return
    st.header("Human review")
    review.page(view.directory)
