"""Ovi adapter: prompt translation, and the config/script protocol against a minimal stand-in `inference.py` written
here (no Ovi weights or GPU here: the real engine and script were not run)."""
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from mheval.adapters import create_adapter, parse_model_spec
from mheval.adapters.ovi import ovi_prompt
from mheval.media import probe
from mheval.runner import RunRequest, run

STAND_IN = '''
"""Stand-in for Ovi's inference.py: same command line and config keys; writes one 24 fps / 16 kHz clip."""
import argparse, csv, json, os
import numpy as np
from mheval.media import write_mp4

parser = argparse.ArgumentParser()
parser.add_argument("--config-file")
config = json.load(open(parser.parse_args().config_file))
rows = list(csv.DictReader(open(config["text_prompt"], encoding="utf-8")))
json.dump({"config": config, "rows": rows, "cwd": os.getcwd()}, open(os.environ["OVI_RECORD"], "w"))
h, w = config["video_frame_height_width"]
frames = np.full((121, h // 4 * 2, w // 4 * 2, 3), 90, np.uint8)
t = np.arange(5 * 16000) / 16000
os.makedirs(config["output_dir"], exist_ok=True)
name = f"clip_{h}x{w}_{config['seed']}_0.mp4"
write_mp4(os.path.join(config["output_dir"], name), frames, 24, 0.2 * np.sin(2 * np.pi * 220 * t), 16000)
'''


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    directory = tmp_path / "Ovi"
    (directory / "ckpts").mkdir(parents=True)
    (directory / "inference.py").write_text(STAND_IN)
    monkeypatch.setenv("OVI_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    return directory


def test_prompt_puts_speech_in_tags_and_the_audio_description_last(smoke_suite):
    item = next(item for item in smoke_suite.items if item.language == "zh")
    prompt = ovi_prompt(item)
    assert prompt.startswith(item.visual_prompt.split()[0])
    assert "says <S>今天的会议改到下午三点了。<E>." in prompt        # CJK format spaces removed
    assert prompt.endswith("Audio: Clear Mandarin speech (Young businesslike office woman). "
                           "Soft keyboard typing from nearby desks.")
    assert "Dialogue:" not in prompt and "Background Sound:" not in prompt
    old_model = ovi_prompt(item, "720x720_5s")
    assert old_model.endswith("<AUDCAP>Clear Mandarin speech (Young businesslike office woman). "
                              "Soft keyboard typing from nearby desks.<ENDAUDCAP>")


def test_prompt_without_background_block_still_describes_the_voice(smoke_suite):
    item = smoke_suite.items[0]
    bare = dataclasses.replace(item, prompt=item.prompt.split("\n\nBackground Sound:")[0])
    assert ovi_prompt(bare).endswith(f"Audio: Clear English speech ({item.dialogue[0].speaker}).")


def test_run_drives_the_inference_script_with_a_generated_config_and_keeps_native_format(checkout, tmp_path):
    outcome = run(RunRequest(suite="smoke", models=[f"ovi:{checkout}"], out=tmp_path / "run", limit=1,
                             languages=["en"], metrics=["speed"], seed=7, progress=False,
                             model_options={"ovi": {"python": sys.executable, "sample_steps": "30"}}))
    clip = outcome.store.clips().iloc[0]
    assert clip.status == "ok", clip.error
    record = json.loads((tmp_path / "record.json").read_text())
    config = record["config"]
    assert Path(record["cwd"]) == checkout
    assert config["mode"] == "t2v" and config["seed"] == 7 and config["sample_steps"] == 30
    assert config["model_name"] == "960x960_5s" and config["ckpt_dir"] == str(checkout / "ckpts")
    assert config["video_frame_height_width"] == [256, 448] and config["each_example_n_times"] == 1
    assert record["rows"][0]["text_prompt"].endswith("Audio: Clear English speech (Middle-aged man in sweater). "
                                                     "Quiet hum of a refrigerator.")
    info = probe(outcome.store.directory / clip.path)
    assert info.fps == 24 and info.audio_sample_rate == 16000 and info.frame_count == 121   # not resampled
    meta = json.loads(clip.meta)
    assert meta["runner"] == "script" and meta["native_fps"] == 24 and meta["requested_seconds"] != 5.04
    assert "inference_script" in meta["timings"]


def test_script_failure_is_recorded_for_the_item(checkout, tmp_path):
    (checkout / "inference.py").write_text("import sys; sys.exit('CUDA out of memory')")
    outcome = run(RunRequest(suite="smoke", models=[f"ovi:{checkout}"], out=tmp_path / "run", limit=1,
                             languages=["en"], metrics=["speed"], progress=False))
    clip = outcome.store.clips().iloc[0]
    assert clip.status == "failed" and "CUDA out of memory" in clip.error


def test_missing_checkout_or_weights_fail_before_any_item(tmp_path, checkout):
    with pytest.raises(ValueError, match="needs a checkout of the Ovi repository"):
        create_adapter(parse_model_spec("ovi"))
    with pytest.raises(ValueError, match="not an Ovi checkout"):
        create_adapter(parse_model_spec(f"ovi:{tmp_path}"))
    with pytest.raises(ValueError, match="download_weights.py or pass --model-option ovi.ckpt_dir"):
        create_adapter(parse_model_spec(f"ovi:{checkout}"), {"ckpt_dir": str(tmp_path / "none")})
    with pytest.raises(ValueError, match="ovi.runner=engine, but"):
        create_adapter(parse_model_spec(f"ovi:{checkout}"), {"runner": "engine"})
