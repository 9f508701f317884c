"""The mheval results dashboard.

    mheval dashboard runs/smoke runs/other          # or: streamlit run dashboards/app.py -- runs/smoke runs/other

Arguments are run directories, or directories holding runs (default `runs`). The page can be chosen with the URL
query `?page=<name>` (leaderboard, languages, drilldown, verdicts, compare, speed, review) and a prompt with `&item=<id>`.
"""
from __future__ import annotations

import sys

import streamlit as st

from dashboards import views
from dashboards.data import find_runs

PAGES = {
    "leaderboard": ("Leaderboard", views.leaderboard_page),
    "languages": ("By language", views.languages_page),
    "drilldown": ("Drill-down", views.drilldown_page),
    "verdicts": ("Verdicts: A vs B", views.verdicts_page),
    "compare": ("Compare runs", views.compare_page),
    "speed": ("Speed", views.speed_page),
    "review": ("Human review", views.review_page),
}


def main() -> None:
    st.set_page_config(page_title="mheval dashboard", layout="wide")
    runs = find_runs(sys.argv[1:] or ["runs"])
    st.sidebar.title("mheval")
    keys = list(PAGES)
    requested = st.query_params.get("page")
    page = st.sidebar.radio("page", keys, format_func=lambda key: PAGES[key][0], key="page",
                            index=keys.index(requested) if requested in keys else 0)
    if not runs:
        st.info("No run directories given. Start the dashboard with run directories, e.g. "
                "`mheval dashboard runs/smoke`, or make one with `mheval run --suite smoke`.")
        return
    chosen = st.sidebar.selectbox("run", [str(path) for path in runs], key="run")
    PAGES[page][1](views.load_view(runs[[str(path) for path in runs].index(chosen)]), runs)


main()
