"""The `magihuman` adapter: labelled tiny random stack without checkpoints, weight hashes with them, and a whole
`mheval run` next to `puppet`."""
import hashlib
import json
from pathlib import Path

import pytest

from mheval.adapters import create_adapter, parse_model_spec
from mheval.cli import main
from mheval.media import probe
from mheval.store import RunStore

SMOKE = Path(__file__).parents[1] / "prompts" / "smoke.toml"


def adapter(spec="magihuman", **options):
    return create_adapter(parse_model_spec(spec), options)


def test_without_checkpoints_it_is_the_labelled_tiny_random_stack():
    tiny = adapter()
    assert tiny.notice == "tiny random weights"
    assert tiny.config()["model"] == "magihuman-tiny-random" and tiny.config()["preset"] == "distill"
    assert tiny.weights() == []
    assert adapter(preset="sr_1080p").config_hash() != tiny.config_hash()
    with pytest.raises(ValueError, match="preset"):
        adapter(preset="720p")


def test_tiny_stack_clips_are_regenerated_when_its_configuration_changes(monkeypatch):
    """The tiny stack has no weight files to hash, so its configuration is part of the adapter config (and so of
    the generation key): cached clips of an older tiny stack are not reused."""
    from dataclasses import replace

    import model.pipeline

    before = adapter().config_hash()
    monkeypatch.setattr(model.pipeline, "TINY_DIT", replace(model.pipeline.TINY_DIT, num_layers=5))
    assert adapter().config_hash() != before


def test_with_checkpoints_it_hashes_every_file_it_uses(tmp_path):
    files = ["base/model-00001-of-00002.safetensors", "base/model-00002-of-00002.safetensors",
             "turbo_vae/TurboV3-Wan22-TinyShallow_7_7.json", "turbo_vae/checkpoint-340000.ckpt",
             "stable-audio-open-1.0/model_config.json", "stable-audio-open-1.0/model.safetensors",
             "t5gemma-9b-9b-ul2/config.json", "t5gemma-9b-9b-ul2/model.safetensors",
             "Wan2.2-TI2V-5B/Wan2.2_VAE.pth"]
    for index, name in enumerate(files):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(f"weights {index}".encode())
    (tmp_path / "distill").mkdir()   # another preset's weights: not used by "base", not hashed
    (tmp_path / "distill" / "model.safetensors").write_bytes(b"other")
    real = adapter(f"magihuman:{tmp_path}", preset="base")
    assert real.notice is None and real.config()["model"] == "magihuman"
    hashes = {Path(w.path).relative_to(tmp_path).as_posix(): w.sha256 for w in real.weights()}
    assert hashes == {name: hashlib.sha256(f"weights {i}".encode()).hexdigest() for i, name in enumerate(files)}


def small_smoke_suite(directory: Path) -> Path:
    """The smoke suite at one second and 128x64, so the tiny stack's CPU decode stays quick."""
    text = SMOKE.read_text().replace("seconds = 3.0", "seconds = 1.0").replace('"448x256"', '"128x64"')
    assert "128x64" in text and "seconds = 1.0" in text
    path = directory / "smoke.toml"
    path.write_text(text)
    return path


def run_and_check(run_dir: Path, suite: Path | str, capsys, monkeypatch, size: tuple[int, int], seconds: int):
    monkeypatch.setenv("COLUMNS", "200")   # one table row per model, unwrapped
    code = main(["run", "--suite", str(suite), "--models", "magihuman,puppet", "--metrics", "speed",
                 "--languages", "en", "--limit", "1", "--out", str(run_dir), "--no-progress"])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "magihuman¹" in output and "¹ magihuman: tiny random weights" in output  # the notice, as a footnote
    assert "puppet¹" not in output and "puppet (" not in output
    store = RunStore.open_existing(run_dir)
    clips = store.clips()
    assert sorted(clips.model) == ["magihuman", "puppet"] and set(clips.status) == {"ok"}
    meta = json.loads(clips[clips.model == "magihuman"].meta.iloc[0])
    frames = 4 * (25 * seconds // 4) + 1
    assert (meta["media"]["width"], meta["media"]["height"], meta["media"]["frame_count"]) == (*size, frames)
    assert meta["media"]["fps"] == 25 and meta["media"]["has_audio"]
    assert meta["model"] == "magihuman-tiny-random" and meta["random_weights"] is True
    assert {"text_encoding", "base", "decode", "audio_decode"} <= set(meta["timings"])
    assert store.manifest()["models"]["magihuman"]["notice"] == "tiny random weights"
    scores = store.scores()
    assert set(scores[scores.metric == "speed"].status) == {"ok"}


def test_mheval_run_with_magihuman_and_puppet(tmp_path, capsys, monkeypatch):
    run_and_check(tmp_path / "run", small_smoke_suite(tmp_path), capsys, monkeypatch, (128, 64), 1)


@pytest.mark.slow
def test_mheval_run_on_the_smoke_suite(tmp_path, capsys, monkeypatch, smoke_suite):
    item = smoke_suite.items[0]
    run_and_check(tmp_path / "run", "smoke", capsys, monkeypatch, (item.width, item.height), int(item.seconds))


def test_mheval_generate_writes_the_clip_and_prints_the_stage_table(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    code = main(["generate", "--prompt", "A man says: hello.", "--seconds", "1", "--width", "64", "--height", "64",
                 "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0
    assert "magihuman-tiny-random" in printed.err and "25 frames" in printed.err
    for stage in ("text encoding", "base denoising", "video decode", "audio decode", "write mp4", "total"):
        assert stage in printed.out
    info = probe(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (25, 64, 64, 25.0)
