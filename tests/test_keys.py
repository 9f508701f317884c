"""Cache keys and what readers show: scores keyed by everything they depend on (issue 12 item 1), clips regenerated
when their source changes (item 2), and report / gate / exports reading the latest invocation's clips only (item 12)."""
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from mheval import files, runner
from mheval.adapters.puppet import PuppetAdapter
from mheval.cli import main
from mheval.metrics import Metric, WeightFile, metric_registry
from mheval.baselines import metric_scores
from mheval.results import RunResults, summary
from mheval.runner import RunRequest, run
from mheval.store import OldStoreError, RunStore
from mheval.suites import load_suite


class ReferenceLengthForTests(Metric):
    """A cheap metric that reads the item (like WER reads its reference text) and a weight file (like BRISQUE)."""

    name = "reference-length-test"
    version = "1"
    inputs = ("reference_text", "audio")
    fields = ("characters", "rms")
    headline = "characters"
    weight_file: Path | None = None
    calls = 0

    def weights(self):
        return [WeightFile.of(self.weight_file)] if self.weight_file else []

    def score(self, clip):
        type(self).calls += 1
        audio = clip.media.audio_16k
        return {"characters": len(clip.item.reference_text), "rms": float(np.sqrt(np.mean(audio ** 2)))}


@pytest.fixture(autouse=True)
def scoped_test_metric():
    with metric_registry.registered(ReferenceLengthForTests):
        yield


BODY = ("A man in his forties with short grey hair stands in a kitchen and faces the camera. He smiles and says, "
        "\"{line}\" His voice is warm and unhurried.")


def suite_file(directory: Path, lines: dict[str, str], name: str = "keys") -> Path:
    """A suite of English items {id: dialogue line}, written to `directory/<name>.toml`."""
    items = "".join(
        f'[[item]]\nid = "{item_id}"\nlanguage = "en"\nprompt = """{BODY.format(line=line)}\n\nDialogue:\n'
        f'<Man in kitchen, English>: "{line}"\n"""\n' for item_id, line in lines.items())
    path = directory / f"{name}.toml"
    path.write_text(f'[suite]\nname = "{name}"\ndescription = "test"\n[defaults]\nseconds = 2.0\n'
                    f'resolution = "128x96"\n{items}', encoding="utf-8")
    return path


def render(suite: Path, directory: Path, files: dict[str, str], shift_ms: float = 0) -> Path:
    """Puppet clips named for the `clips:` adapter: {file stem: item id whose line the puppet speaks}."""
    directory.mkdir(parents=True, exist_ok=True)
    loaded = load_suite(suite)
    for stem, item_id in files.items():
        PuppetAdapter(shift_ms=str(shift_ms)).generate(loaded.item(item_id), directory / f"{stem}.mp4", 0)
    return directory


def clips_run(suite: Path, clips: Path, out: Path, metrics=("reference-length-test",), **changes):
    return run(RunRequest(suite=str(suite), models=[f"ext=clips:{clips}"], out=out, metrics=list(metrics),
                          progress=False, **changes))


def values(out: Path, column: str) -> dict[str, float]:
    table = RunResults.load(out).clips
    return dict(zip(table.item_id, table[column]))


# -- item 1: the score key --------------------------------------------------------------------------------------------

def test_fixing_a_dialogue_typo_rescores_a_clip_brought_in_with_clips(tmp_path):
    """Item 1: a score depends on the item (WER on its reference text), not only on the clip's bytes."""
    typo, fixed = "Morning. The cofee is ready.", "Morning. The coffee is ready."
    suite = suite_file(tmp_path, {"en-01": typo})
    clips = render(suite, tmp_path / "clips", {"en-01": "en-01"})
    first = clips_run(suite, clips, tmp_path / "run")
    assert first.scored == 1 and values(tmp_path / "run", "reference-length-test.characters") == {"en-01": len(typo)}
    suite_file(tmp_path, {"en-01": fixed})
    again = clips_run(suite, clips, tmp_path / "run")
    assert again.scored == 1
    assert values(tmp_path / "run", "reference-length-test.characters") == {"en-01": len(fixed)}


def test_items_with_byte_identical_clips_get_separate_scores(tmp_path):
    """Item 1: two items sharing one clip file's bytes are scored each against its own item."""
    suite = suite_file(tmp_path, {"en-01": "Good morning.", "en-02": "Good morning, everybody in the room."})
    clips = render(suite, tmp_path / "clips", {"en-01": "en-01", "en-02": "en-01"})
    assert (clips / "en-01.mp4").read_bytes() == (clips / "en-02.mp4").read_bytes()
    outcome = clips_run(suite, clips, tmp_path / "run")
    assert outcome.scored == 2 and len(outcome.store.scores()) == 2
    assert values(tmp_path / "run", "reference-length-test.characters") == {"en-01": 13, "en-02": 36}


def test_a_changed_metric_weight_file_rescores(tmp_path, monkeypatch):
    """Item 1: the score key holds the sha256 of every weight file the metric reads."""
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"weights v1")
    monkeypatch.setattr(ReferenceLengthForTests, "weight_file", weights)
    suite = suite_file(tmp_path, {"en-01": "Good morning."})
    clips = render(suite, tmp_path / "clips", {"en-01": "en-01"})
    assert clips_run(suite, clips, tmp_path / "run").scored == 1
    assert clips_run(suite, clips, tmp_path / "run").scored == 0
    weights.write_bytes(b"weights v2")
    assert clips_run(suite, clips, tmp_path / "run").scored == 1


@pytest.mark.slow
def test_fixing_a_dialogue_typo_recomputes_wer(tmp_path):
    """Item 1 with real Whisper: the WER of a fixed reference is recomputed, not kept from the typo."""
    line = "Morning. The coffee's ready if you want some."
    suite = suite_file(tmp_path, {"en-01": line})
    clips = render(suite, tmp_path / "clips", {"en-01": "en-01"})  # the puppet says the line right
    suite_file(tmp_path, {"en-01": line.replace("coffee's ready", "cofee is redy")})
    clips_run(suite, clips, tmp_path / "run", metrics=["wer"])
    with_typo = values(tmp_path / "run", "wer.wer")["en-01"]
    suite_file(tmp_path, {"en-01": line})
    assert clips_run(suite, clips, tmp_path / "run", metrics=["wer"]).scored == 1
    assert values(tmp_path / "run", "wer.wer")["en-01"] < with_typo


def downgrade_to_schema_1(db: Path) -> None:
    """Rewrite a store as mheval's store schema 1 wrote it: scores keyed by clip bytes alone, no run records."""
    connection = sqlite3.connect(db)
    connection.executescript("""
        DROP TABLE scores;
        CREATE TABLE scores (clip_sha256 TEXT NOT NULL, metric TEXT NOT NULL, metric_version TEXT NOT NULL,
            config_hash TEXT NOT NULL, status TEXT NOT NULL, fields TEXT NOT NULL, detail TEXT, created REAL NOT NULL,
            PRIMARY KEY (clip_sha256, metric, metric_version, config_hash));
        INSERT INTO scores SELECT sha256, 'reference-length-test', '1', 'x', 'ok', '{"characters": 1}', NULL, 0
            FROM clips;
        ALTER TABLE clips DROP COLUMN item_hash;
        CREATE TABLE old_runs AS SELECT run_id, started, finished, suite, suite_hash, models, argv, manifest FROM runs;
        DROP TABLE runs;
        ALTER TABLE old_runs RENAME TO runs;
        PRAGMA user_version = 0;
    """)
    connection.close()


def test_a_schema_1_store_is_refused_by_readers_and_migrated_by_a_run(tmp_path, capsys):
    """Item 1: a store whose scores are keyed by clip bytes alone is never silently mis-joined."""
    suite = suite_file(tmp_path, {"en-01": "Good morning.", "en-02": "Good evening."})
    clips = render(suite, tmp_path / "clips", {"en-01": "en-01", "en-02": "en-02"})
    clips_run(suite, clips, tmp_path / "run")
    downgrade_to_schema_1(tmp_path / "run" / "run.sqlite")
    with pytest.raises(OldStoreError, match="store schema 1.*keyed by clip bytes alone"):
        RunStore.open_existing(tmp_path / "run")
    assert main(["report", str(tmp_path / "run")]) == 2
    assert "mheval run" in capsys.readouterr().err
    again = clips_run(suite, clips, tmp_path / "run")
    assert again.generated == 0 and again.scored == 2  # clips kept, scores recomputed
    assert "migrated" in capsys.readouterr().err
    assert values(tmp_path / "run", "reference-length-test.characters") == {"en-01": 13, "en-02": 13}


# -- item 2: generation keys that notice changed sources --------------------------------------------------------------

def test_a_clip_re_rendered_under_the_same_name_is_copied_and_scored_again(tmp_path):
    """Item 2: the `clips:` generation key holds each source file's sha256, not only directory × item × seed."""
    suite = suite_file(tmp_path, {"en-01": "Good morning.", "en-02": "Good evening."})
    clips = render(suite, tmp_path / "clips", {"en-01": "en-01", "en-02": "en-02"})
    first = clips_run(suite, clips, tmp_path / "run")
    assert (first.generated, first.scored) == (2, 2)
    render(suite, clips, {"en-01": "en-01"}, shift_ms=300)  # a new render of en-01, same file name
    again = clips_run(suite, clips, tmp_path / "run")
    assert (again.generated, again.scored) == (1, 1)
    stored = again.store.clips().set_index("item_id")
    assert stored.loc["en-01", "sha256"] == files.sha256_file(clips / "en-01.mp4")
    unchanged = clips_run(suite, clips, tmp_path / "run")
    assert (unchanged.generated, unchanged.scored) == (0, 0)


def test_command_adapter_regenerates_when_its_declared_version_or_files_change(tmp_path):
    """Item 2: `command:` declares what changes its output: a `version` string and files whose sha256 join the key."""
    suite = suite_file(tmp_path, {"en-01": "Good morning."})
    clips = render(suite, tmp_path / "clips", {"en-01": "en-01"})
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"step 1000")
    template = f"{sys.executable} -c \"import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])\" {clips}/{{id}}.mp4 {{output}}"

    def generated(**options: str) -> int:
        return run(RunRequest(suite=str(suite), models=[f"mine=command:{template}"], out=tmp_path / "run",
                              metrics=["reference-length-test"], model_options={"mine": options},
                              progress=False)).generated

    assert generated(files=str(checkpoint)) == 1
    assert generated(files=str(checkpoint)) == 0
    checkpoint.write_bytes(b"step 2000")
    assert generated(files=str(checkpoint)) == 1
    assert generated(files=str(checkpoint), version="2") == 1
    assert generated(files=str(checkpoint), version="2", timeout="60") == 0  # the timeout changes no clip
    with pytest.raises(ValueError, match="unknown option.*verison"):
        generated(verison="3")
    with pytest.raises(ValueError, match="no such file"):
        generated(files=str(tmp_path / "missing.ckpt"))


# -- item 12: readers show the latest invocation --------------------------------------------------------------------

def test_report_gate_and_exports_show_the_latest_invocation_and_say_which(tmp_path, capsys):
    """Item 12: after runs with other labels, seeds and items, every reader shows the latest invocation's clips only
    and names it (run id, suite hash, seed)."""
    suite = suite_file(tmp_path, {"en-01": "Good morning.", "en-02": "Good evening.", "en-03": "Good night."})
    out = tmp_path / "run"
    request = dict(suite=str(suite), out=out, metrics=["reference-length-test"], progress=False)
    run(RunRequest(models=["a=puppet"], seed=1, **request))
    latest = run(RunRequest(models=["b=puppet"], seed=2, limit=2, **request))
    assert latest.record.run_id == 2
    table = RunResults.from_store(latest.store, latest.record).clips
    assert set(table.model) == {"b"} and set(table.seed) == {2} and sorted(table.item_id) == ["en-01", "en-02"]
    scores = metric_scores(out, "reference-length-test")
    assert set(scores.prompts.model) == {"b"} and sorted(scores.prompts.item_id) == ["en-01", "en-02"]
    assert main(["report", str(out)]) == 0
    report = capsys.readouterr().out
    assert f"run 2 · suite keys (sha256 {latest.suite.content_hash()[:12]}) · seed 2 · 2 prompt(s) × 1 model(s)" in report
    assert " a " not in report
    assert main(["run", "--suite", str(suite), "--models", "b=puppet", "--seed", "2", "--limit", "2", "--metrics",
                 "reference-length-test", "--out", str(out), "--no-progress"]) == 0
    exported = json.loads((out / "exports" / "results.json").read_text())
    assert exported["run"]["run_id"] == 3 and exported["run"]["seed"] == 2 and exported["run"]["finished"]
    assert {row["model"] for row in exported["clips"]} == {"b"} and len(exported["clips"]) == 2


def test_clips_an_interrupted_invocation_did_not_regenerate_are_stale_and_show_no_score(tmp_path, monkeypatch):
    """Item 12: a clip made under an earlier configuration is not shown as the latest invocation's result."""
    suite = suite_file(tmp_path, {"en-01": "Good morning.", "en-02": "Good evening."})
    request = dict(suite=str(suite), models=["puppet"], out=tmp_path / "run", metrics=["reference-length-test"],
                   progress=False)
    run(RunRequest(**request))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "generate_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(RunRequest(**request, model_options={"puppet": {"shift_ms": "200"}}))
    table = RunResults.load(tmp_path / "run").clips
    assert list(table.clip_status) == ["stale", "stale"]
    assert set(table["reference-length-test.status"]) == {"missing"}
    summary_row = summary(table, ["reference-length-test"]).iloc[0]
    assert summary_row.n == 0 and summary_row.failed == 2
