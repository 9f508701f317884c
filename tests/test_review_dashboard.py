"""The dashboard's "Human review" page on a run with a study: the report's tables and chart, and how many votes and
raters stand behind each number."""
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.review import find_studies, share_chart_frame
from mheval.review.report import build_report
from mheval.review.storage import StudyStore
from mheval.review.study import StudyConfig, create_study
from review_fixtures import MODELS, simulate, tiny_run

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


@pytest.fixture(scope="module")
def run_with_study(tmp_path_factory) -> Path:
    run_dir = tiny_run(tmp_path_factory.mktemp("run"))
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0, catch_rate=0.25),
                         run_dir / "studies" / "three-models", progress=False)
    rng = np.random.default_rng(0)
    for name, behaviour in (("ana", "consistent"), ("ben", "consistent"), ("cleo", "always_left")):
        simulate(store, store.authenticate(store.invite(name, [])).rater_id, behaviour, rng)
    create_study(run_dir, StudyConfig(models=MODELS[:2]), run_dir / "studies" / "empty", progress=False)
    return run_dir


def review_page(monkeypatch, run_dir: Path) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", str(run_dir)])
    test = AppTest.from_file(str(APP), default_timeout=180)
    test.query_params["page"] = "review"
    test.run()
    assert not test.exception, [e.value for e in test.exception]
    return test


@pytest.mark.slow   # the page runs the full report through Streamlit, twice
def test_review_page_shows_shares_with_votes_and_raters_and_a_chart(run_with_study, monkeypatch):
    assert [path.name for path in find_studies(run_with_study)] == ["empty", "three-models"]
    test = review_page(monkeypatch, run_with_study)
    test.selectbox(key="review_study").set_value("three-models").run()
    header = "\n".join(str(m.value) for m in test.markdown)
    assert "votes from 3 raters" in header
    table = test.dataframe[0].value
    assert list(table.columns) == ["matchup", "language", "win", "tie", "loss", "decisive win", "votes", "raters",
                                   "prompts", "interval", "verdict (Holm)"]
    assert set(table.language) == {"all", "de", "en"} and (table.raters == 3).all()
    report = build_report(StudyStore(run_with_study / "studies" / "three-models"))
    assert table.votes.tolist() == report.shares[report.shares.criterion == "overall"].n.tolist()
    assert len(test.get("vega_lite_chart")) == 1
    frame = share_chart_frame(report, "overall")
    assert set(frame.result) == {"win", "tie", "loss"} and (frame.low <= frame.share + 1e-12).all()
    test.toggle(key="review_exclude").set_value(True).run()
    header = "\n".join(str(m.value) for m in test.markdown)
    # cleo answers too few catch trials here for the pass rate to count (RaterBars.min_catch_answers); her
    # swapped repeats fail her instead
    assert "votes from 2 raters" in header and "excluded: cleo (self-consistency" in header
    assert (test.dataframe[0].value.raters == 2).all()


@pytest.mark.slow
def test_a_study_without_votes_and_a_run_without_studies_say_so(run_with_study, monkeypatch, tmp_path):
    test = review_page(monkeypatch, run_with_study)
    test.selectbox(key="review_study").set_value("empty").run()
    assert "No votes yet" in "\n".join(str(i.value) for i in test.info)
    bare = tiny_run(tmp_path)
    test = review_page(monkeypatch, bare)
    assert "No study in this run" in "\n".join(str(i.value) for i in test.info)
