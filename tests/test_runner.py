"""Run store and runner: caching, resume after a kill, per-clip failures, adapters, exports."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mheval.adapters import parse_model_spec
from mheval.adapters.puppet import PuppetAdapter
from mheval.media import probe, read_audio
from metrics_for_tests import AudioLevel
from mheval.metrics import Metric, metric_registry
from mheval.runner import RunRequest, run
from mheval.validate import rewrite_clip


@pytest.fixture(autouse=True)
def scoped_test_metrics(audio_level):
    """The cheap metrics these tests score with, registered for each test only."""
    with metric_registry.registered(MediaFactsForTests):
        yield


def _request(tmp_path, **changes):
    fields = dict(suite="smoke", models=["puppet"], out=tmp_path / "run", metrics=["audio-level-test"], progress=False)
    fields.update(changes)
    return RunRequest(**fields)


def test_run_stores_one_clip_and_score_per_item_and_second_run_computes_nothing(tmp_path, smoke_suite):
    first = run(_request(tmp_path))
    assert first.generated == len(smoke_suite.items) and first.scored == len(smoke_suite.items)
    clips = first.store.clips()
    assert list(clips.status) == ["ok"] * len(smoke_suite.items)
    for row in clips.itertuples():
        info = probe(first.store.directory / row.path)
        assert info.fps == 25 and info.has_audio and (info.width, info.height) == (448, 256)
    second = run(_request(tmp_path))
    assert second.generated == 0 and second.scored == 0
    assert len(second.store.scores()) == len(smoke_suite.items)
    assert len(second.store.runs()) == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["suite"]["sha256"] == smoke_suite.content_hash()
    assert manifest["models"]["puppet"]["config"]["adapter"] == "puppet"
    assert manifest["packages"]["torch"] == "2.14.1"


def test_changed_adapter_config_regenerates_and_rescoring_is_by_content(tmp_path):
    run(_request(tmp_path, limit=1, languages=["en"]))
    shifted = run(_request(tmp_path, limit=1, languages=["en"], model_options={"puppet": {"shift_ms": "200"}}))
    assert shifted.generated == 1 and shifted.scored == 1
    assert len(shifted.store.scores()) == 2  # two different clip contents, one score each


def test_limit_is_per_language(tmp_path, smoke_suite):
    outcome = run(_request(tmp_path, limit=1))
    languages = {item.language for item in smoke_suite.items}
    assert len(outcome.items) == len(languages)


def test_clips_adapter_reports_missing_extra_and_broken_clips_and_run_continues(tmp_path, smoke_suite):
    made = run(_request(tmp_path))
    clips_dir = tmp_path / "incoming"
    clips_dir.mkdir()
    items = [item.id for item in smoke_suite.items]
    good, corrupt, empty = items[:3]
    (clips_dir / f"{good}.mp4").write_bytes((made.store.directory / made.store.clips().path[0]).read_bytes())
    (clips_dir / f"{corrupt}.mp4").write_bytes(os.urandom(4096))
    (clips_dir / f"{empty}.mp4").write_bytes(b"")
    (clips_dir / "not-an-item.mp4").write_bytes(b"x")
    outcome = run(_request(tmp_path, models=[f"ext=clips:{clips_dir}"], out=tmp_path / "ext"))
    assert outcome.coverage["ext"].extra == ("not-an-item",)
    clips = outcome.store.clips().set_index("item_id")
    assert clips.loc[good, "status"] == "ok"
    errors = {item: clips.loc[item, "error"] for item in (corrupt, empty)}
    assert all(clips.loc[item, "status"] == "failed" for item in errors)
    assert "not a readable media file" in errors[corrupt] and f"{corrupt}.mp4" in errors[corrupt]
    assert "file is empty" in errors[empty]
    assert len(outcome.store.scores()) == 1


def test_clips_without_audio_or_video_are_kept_and_scored_where_they_can_be(tmp_path, smoke_suite):
    """Issue 12 item 5: a video-only clip keeps its visual scores (audio metrics: not applicable, "clip has no
    audio"), an audio-only clip its audio scores (visual: not applicable); the media facts say which streams it has.
    Both used to fail entirely."""
    made = run(_request(tmp_path, limit=1, languages=["en"]))
    source = made.store.directory / made.store.clips().path[0]
    item = made.store.clips().item_id[0]
    folders = {"video": tmp_path / "video-only", "audio": tmp_path / "audio-only"}
    rewrite_clip(source, folders["video"] / f"{item}.mp4", audio=lambda audio, rate: None)
    rewrite_clip(source, folders["audio"] / f"{item}.mp4", frames=lambda frames: None)
    outcome = run(_request(tmp_path, models=[f"{kind}=clips:{folder}" for kind, folder in folders.items()],
                           out=tmp_path / "partial", limit=1, languages=["en"],
                           metrics=["audio-level-test", "technical"]))
    clips = outcome.store.clips().set_index("model")
    assert (clips.status == "ok").all()
    media = {model: json.loads(clips.loc[model, "meta"])["media"] for model in folders}
    assert (media["video"]["has_video"], media["video"]["has_audio"]) == (True, False)
    assert (media["audio"]["has_video"], media["audio"]["has_audio"]) == (False, True)
    scores = outcome.store.scores().set_index(["clip_sha256", "metric"])
    status = {(model, metric): scores.loc[(clips.loc[model, "sha256"], metric), "status"]
              for model in folders for metric in ("audio-level-test", "technical")}
    assert status == {("video", "audio-level-test"): "not_applicable", ("video", "technical"): "ok",
                      ("audio", "audio-level-test"): "ok", ("audio", "technical"): "not_applicable"}
    reason = scores.loc[(clips.loc["video", "sha256"], "audio-level-test"), "detail"]
    assert "clip has no audio" in reason and outcome.failures == 0


def test_clip_longer_than_the_limit_is_refused_and_the_run_continues(tmp_path):
    """Issue 12 item 16: a configurable length limit, refused per clip with the reason."""
    outcome = run(_request(tmp_path, limit=1, languages=["en", "de"], max_clip_seconds=3.2))
    clips = outcome.store.clips().set_index("item_id")
    long, short = clips[clips.status == "failed"], clips[clips.status == "ok"]
    assert len(long) == 1 and len(short) == 1   # en-kitchen-01 plays 3.68 s, de-platform-01 3.0 s
    assert "longer than the limit of 3.2 s" in long.error.iloc[0] and "--max-clip-seconds" in long.error.iloc[0]


def test_clips_adapter_missing_item_is_a_recorded_failure(tmp_path, smoke_suite):
    empty_dir = tmp_path / "none"
    empty_dir.mkdir()
    outcome = run(_request(tmp_path, models=[f"clips:{empty_dir}"], out=tmp_path / "r"))
    assert set(outcome.coverage["clips-none"].missing) == {item.id for item in smoke_suite.items}
    assert (outcome.store.clips().status == "failed").all()
    assert len(outcome.store.errors(outcome.run_id)) == len(smoke_suite.items)


def test_command_adapter_runs_template_and_keeps_sidecar_metadata(tmp_path):
    script = tmp_path / "gen.py"
    script.write_text(
        "import json, sys\n"
        "from mheval.adapters.puppet import PuppetAdapter\n"
        "from mheval.suites import load_suite\n"
        "out, item_id, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "PuppetAdapter().generate(load_suite('smoke').item(item_id), __import__('pathlib').Path(out), seed)\n"
        "json.dump({'timings': {'base': 1.5}}, open(out + '.json', 'w'))\n"
    )
    template = f"{sys.executable} {script} {{output}} {{id}} {{seed}}"
    outcome = run(_request(tmp_path, models=[f"mine=command:{template}"], limit=1, languages=["en"]))
    clip = outcome.store.clips().iloc[0]
    assert clip.status == "ok"
    assert json.loads(clip.meta)["timings"] == {"base": 1.5}


def test_command_adapter_failure_is_recorded_with_stderr(tmp_path):
    template = f"{sys.executable} -c \"import sys; sys.exit('model exploded')\" {{output}}"
    outcome = run(_request(tmp_path, models=[f"bad=command:{template}"], limit=1, languages=["en"]))
    clip = outcome.store.clips().iloc[0]
    assert clip.status == "failed" and "model exploded" in clip.error


def test_model_spec_parsing():
    assert parse_model_spec("puppet").label == "puppet"
    spec = parse_model_spec("ltx=clips:/data/ltx23")
    assert (spec.label, spec.adapter, spec.arg) == ("ltx", "clips", "/data/ltx23")
    assert parse_model_spec("clips:/data/ovi").label == "clips-ovi"
    with pytest.raises(ValueError, match="unknown adapter"):
        parse_model_spec("nosuch")
    with pytest.raises(ValueError, match="model label"):
        parse_model_spec("bad label=puppet")


def test_puppet_shift_delays_audio(tmp_path, smoke_suite):
    item = smoke_suite.items[0]
    PuppetAdapter().generate(item, tmp_path / "a.mp4", 0)
    PuppetAdapter(shift_ms="400").generate(item, tmp_path / "b.mp4", 0)
    a, b = read_audio(tmp_path / "a.mp4"), read_audio(tmp_path / "b.mp4")
    onset = lambda x: int(np.argmax(np.abs(x) > 0.05))
    assert abs((onset(b) - onset(a)) / 16000 - 0.4) < 0.01


def _count(db: Path, table: str) -> int:
    """Rows in `table`; 0 while the run that creates the database has not created its tables yet."""
    with sqlite3.connect(db) as connection:
        try:
            return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
def test_killed_run_resumes_with_exactly_one_result_per_item(tmp_path, smoke_suite):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mheval.cli", "run", "--suite", "smoke", "--models", "puppet",
               "--metrics", "wer", "--out", str(out), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "run.sqlite"
    deadline = time.time() + 600
    while time.time() < deadline:
        if db.exists() and _count(db, "scores") >= 1:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    scored_before = _count(db, "scores")
    assert 1 <= scored_before < len(smoke_suite.items), "the kill should land mid-way through scoring"
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    with sqlite3.connect(db) as connection:
        clips = pd.read_sql_query("SELECT * FROM clips", connection)
        scores = pd.read_sql_query("SELECT * FROM scores", connection)
    assert sorted(clips.item_id) == sorted(item.id for item in smoke_suite.items)
    assert (clips.status == "ok").all()
    assert len(scores) == len(smoke_suite.items) and set(scores.status) == {"ok"}
    assert not list(out.glob("clips/*/.*partial*"))


def test_puppet_speaks_japanese_from_kana_and_keeps_other_languages_verbatim():
    from mheval.adapters.puppet import speakable

    spoken = speakable("写真撮ってもいい？", "ja")
    assert spoken == "しゃしんとってもいい？"
    assert speakable("Guten Tag", "de") == "Guten Tag" and speakable("你好", "zh") == "你好"


class MediaFactsForTests(Metric):
    """Records the media facts scoring saw, to check they are the generation-time probe of the same bytes."""

    name = "media-facts-test"
    version = "1"
    inputs = ("video",)
    fields = ("frames",)
    headline = "frames"
    seen: list = []

    def score(self, clip):
        type(self).seen.append(clip.media.info)
        return {"frames": clip.media.info.frame_count}


def test_scoring_reuses_the_generation_probe_of_the_same_bytes(tmp_path, monkeypatch, smoke_suite):
    taken = []
    monkeypatch.setattr("mheval.runner.probe", lambda path: taken.append(probe(path)) or taken[-1])
    monkeypatch.setattr("mheval.media.probe", lambda path: pytest.fail(f"{path} was probed again for scoring"))
    MediaFactsForTests.seen.clear()
    result = run(_request(tmp_path, metrics=["media-facts-test"]))
    assert result.scored == len(smoke_suite.items)
    assert MediaFactsForTests.seen == taken


def test_clip_media_probes_when_the_recorded_facts_are_missing_or_from_another_version(tmp_path, smoke_suite):
    from mheval.media import ClipMedia

    clip = tmp_path / "clip.mp4"
    PuppetAdapter().generate(smoke_suite.items[0], clip, 0)
    facts = probe(clip)
    assert ClipMedia.recorded_info(dict(facts.__dict__)) == facts
    assert ClipMedia.recorded_info(None) is None
    assert ClipMedia.recorded_info({"width": 448, "height": 256, "fps": 25.0}) is None
    assert ClipMedia(clip, ClipMedia.recorded_info({"width": 448})).info == facts


def test_a_truncated_clip_whose_index_survived_is_a_failed_clip_and_the_run_goes_on(tmp_path, smoke_suite):
    """Issue 20 item 9: a faststart mp4 cut off inside its media data still opens (the index at the front declares
    every frame) and decodes what is left; it used to be scored as if it were the whole clip."""
    from mheval.media import move_index_to_front, write_mp4

    frames = np.random.default_rng(0).integers(0, 256, (74, 48, 64, 3), dtype=np.uint8)   # noise: big frames
    tone = (0.2 * np.sin(np.arange(round(74 / 25 * 16_000)) / 10)).astype(np.float32)
    clips_dir = tmp_path / "incoming"
    intact, truncated = (item.id for item in smoke_suite.items[:2])
    write_mp4(clips_dir / f"{intact}.mp4", frames, 25, tone, 16_000)
    move_index_to_front(clips_dir / f"{intact}.mp4")
    data = (clips_dir / f"{intact}.mp4").read_bytes()
    media_data = data.index(b"mdat") - 4
    assert data.index(b"moov") < media_data                        # the index comes first and stays whole
    (clips_dir / f"{truncated}.mp4").write_bytes(data[:media_data + (len(data) - media_data) // 2])
    outcome = run(_request(tmp_path, models=[f"ext=clips:{clips_dir}"], out=tmp_path / "ext"))
    clips = outcome.store.clips().set_index("item_id")
    assert clips.loc[intact, "status"] == "ok" and json.loads(clips.loc[intact, "meta"])["media"]["frame_count"] == 74
    error = clips.loc[truncated, "error"]
    assert clips.loc[truncated, "status"] == "failed" and f"{truncated}.mp4" in error
    assert "cut short" in error and "of the 74 video frames" in error and "audio samples" in error
    assert set(outcome.store.scores().clip_sha256) == {clips.loc[intact, "sha256"]}   # the rest was scored
    assert any(truncated in str(row) for row in outcome.store.errors(outcome.run_id).itertuples())
