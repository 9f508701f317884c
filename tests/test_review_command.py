"""`mheval review ...` end to end in one process: create, invite, revoke, report, export, and bad input (exit 2)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mheval.cli import main
from mheval.review.storage import StudyStore
from review_fixtures import MODELS, simulate, tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("run"))


def test_create_invite_vote_report_and_export(run_dir, tmp_path, capsys):
    assert main(["review", "create", str(run_dir), "--models", ",".join(MODELS[:2]), "--dwell-factor", "0",
                 "--no-progress"]) == 0
    study = run_dir / "studies" / f"{MODELS[0]}-vs-{MODELS[1]}"
    assert "4 prompts (de, en), 4 pairs" in capsys.readouterr().out
    assert main(["review", "invite", str(study), "--name", "ana", "--languages", "en,de"]) == 0
    token = capsys.readouterr().out.split("shown only now:")[1].split()[0]
    store = StudyStore(study)
    rater = store.authenticate(token)
    assert rater.languages == ("de", "en")
    simulate(store, rater.rater_id, "consistent", np.random.default_rng(0))
    markdown, report_json, csv, parquet = (tmp_path / name for name in ("r.md", "r.json", "v.csv", "v.parquet"))
    assert main(["review", "report", str(study), "--markdown", str(markdown), "--json", str(report_json)]) == 0
    printed = capsys.readouterr().out
    assert "Blind pairwise study" in printed and f"{MODELS[0]} vs {MODELS[1]}" in printed
    assert "## Protocol" in markdown.read_text()
    assert json.loads(report_json.read_text())["protocol"]["raters_voting"] == 1
    assert main(["review", "export", str(study), "--out", str(csv)]) == 0
    assert main(["review", "export", str(study), "--out", str(parquet)]) == 0
    votes = pd.read_csv(csv)
    assert len(votes) == store.vote_count() and votes.equals(pd.read_parquet(parquet).astype(votes.dtypes))
    for column in ("timestamp", "rater", "trial", "left_clip", "right_clip", "side", "criterion", "winner_model"):
        assert column in votes
    assert set(votes.side) <= {"left", "tie", "right"} and votes.timestamp.str.endswith("Z").all()
    assert main(["review", "revoke", str(study), "--name", "ana"]) == 0


def test_bad_input_exits_2_with_the_problem_named(run_dir, tmp_path, capsys):
    assert main(["review", "create", str(run_dir), "--models", f"{MODELS[0]},nobody", "--out",
                 str(tmp_path / "s"), "--no-progress"]) == 2
    assert "no clips from model nobody" in capsys.readouterr().err
    assert main(["review", "create", str(run_dir), "--models", ",".join(MODELS), "--criteria", "overall,lipsync",
                 "--out", str(tmp_path / "s")]) == 2
    assert "unknown criterion lipsync" in capsys.readouterr().err
    assert main(["review", "invite", str(tmp_path / "nowhere"), "--name", "x"]) == 2
    assert "not a study directory" in capsys.readouterr().err
    assert main(["review", "create", str(run_dir), "--models", ",".join(MODELS), "--out", str(tmp_path / "s"),
                 "--no-progress"]) == 0
    assert main(["review", "invite", str(tmp_path / "s"), "--name", "x", "--languages", "en,klingon"]) == 2
    assert "unknown language klingon" in capsys.readouterr().err
    assert main(["review", "revoke", str(tmp_path / "s"), "--name", "nobody"]) == 2
    assert main(["review", "export", str(tmp_path / "s"), "--out", str(tmp_path / "v.xlsx")]) == 2
