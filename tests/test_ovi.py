"""Ovi adapter: prompt translation; the config/script protocol against a minimal stand-in `inference.py`; the
in-process engine path against a minimal stand-in `ovi` package with the checkout's import path and engine interface
(`ovi.ovi_fusion_engine.OviFusionEngine(config, device, target_dtype)` and its `generate(...)` keywords, as in
character-ai/Ovi). Both stand-ins are written here; no Ovi weights or GPU here: the real engine and script were not
run."""
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from mheval.adapters import create_adapter, parse_model_spec
from mheval.adapters.ovi import ovi_prompt
from mheval.cli import main
from mheval.media import probe
from mheval.runner import RunRequest, run
from mheval.store import RunStore

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


ENGINE_STAND_IN = '''
"""Stand-in for Ovi's ovi/ovi_fusion_engine.py: the same module path, class, constructor and generate signature.
Records each construction and call; returns (video [C, F, H, W] in [-1, 1], audio [N] at 16 kHz, None) as the real
engine does, 121 frames at an eighth of the asked size, its grey level set by the seed."""
import json
import os

import numpy as np
import torch
from omegaconf import OmegaConf

DEFAULT_CONFIG = OmegaConf.load("ovi/configs/inference/inference_fusion.yaml")   # relative to the cwd, as Ovi's


def record(event):
    with open(os.environ["OVI_ENGINE_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(event, ensure_ascii=False) + "\\n")


class OviFusionEngine:
    def __init__(self, config=DEFAULT_CONFIG, device=0, target_dtype=torch.bfloat16):
        record({"event": "init", "ckpt_dir": config.ckpt_dir, "model_name": config.get("model_name"),
                "cpu_offload": config.get("cpu_offload", False), "fp8": config.get("fp8", False),
                "device": device, "dtype": str(target_dtype), "cwd": os.getcwd()})

    def generate(self, text_prompt, image_path=None, video_frame_height_width=None, seed=100, solver_name="unipc",
                 sample_steps=50, shift=5.0, video_guidance_scale=5.0, audio_guidance_scale=4.0, slg_layer=9,
                 video_negative_prompt="", audio_negative_prompt=""):
        record({"event": "generate", "text_prompt": text_prompt, "image_path": image_path,
                "video_frame_height_width": video_frame_height_width, "seed": seed, "solver_name": solver_name,
                "sample_steps": sample_steps, "shift": shift, "video_guidance_scale": video_guidance_scale,
                "audio_guidance_scale": audio_guidance_scale, "slg_layer": slg_layer,
                "video_negative_prompt": video_negative_prompt, "audio_negative_prompt": audio_negative_prompt,
                "cwd": os.getcwd()})
        h, w = video_frame_height_width
        video = np.full((3, 121, h // 8, w // 8), (seed % 5) / 5 - 0.4, np.float32)
        t = np.arange(5 * 16000) / 16000
        return video, 0.2 * np.sin(2 * np.pi * 220 * t), None
'''


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    directory = tmp_path / "Ovi"
    (directory / "ckpts").mkdir(parents=True)
    (directory / "inference.py").write_text(STAND_IN)
    monkeypatch.setenv("OVI_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    return directory


@pytest.fixture
def engine_checkout(checkout, tmp_path, monkeypatch):
    """The checkout with an importable stand-in `ovi` package; forgets the imported package afterwards, so that no
    other test finds it importable."""
    package = checkout / "ovi"
    (package / "configs" / "inference").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "configs" / "inference" / "inference_fusion.yaml").write_text(
        "ckpt_dir: ./ckpts\nmodel_name: 960x960_5s\nmode: t2v\nseed: 103\n")
    (package / "ovi_fusion_engine.py").write_text(ENGINE_STAND_IN)
    monkeypatch.setenv("OVI_ENGINE_LOG", str(tmp_path / "engine.jsonl"))
    yield checkout
    for name in [name for name in sys.modules if name == "ovi" or name.startswith("ovi.")]:
        del sys.modules[name]


def engine_events(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "engine.jsonl").read_text(encoding="utf-8").splitlines()]


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


def test_run_uses_the_in_process_engine_constructed_once(engine_checkout, tmp_path, smoke_suite):
    out = tmp_path / "run"
    code = main(["run", "--suite", "smoke", "--models", f"ovi:{engine_checkout}", "--languages", "en,de",
                 "--limit", "1", "--seed", "7", "--model-option", "ovi.sample_steps=30", "--metrics", "speed",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    events = engine_events(tmp_path)
    inits = [event for event in events if event["event"] == "init"]
    calls = [event for event in events if event["event"] == "generate"]
    assert len(inits) == 1 and len(calls) == 2                      # one engine for the run, one call per item
    assert inits[0]["ckpt_dir"] == str(engine_checkout / "ckpts") and inits[0]["model_name"] == "960x960_5s"
    assert inits[0]["dtype"] == "torch.bfloat16" and Path(inits[0]["cwd"]) == engine_checkout
    items = {item.id: item for item in smoke_suite.items}
    prompts = {ovi_prompt(items["en-kitchen-01"]), ovi_prompt(items["de-platform-01"])}
    assert {call["text_prompt"] for call in calls} == prompts
    assert all(call["seed"] == 7 and call["sample_steps"] == 30 and call["image_path"] is None
               and call["video_frame_height_width"] == [256, 448] and call["solver_name"] == "unipc"
               and Path(call["cwd"]) == engine_checkout for call in calls)
    store = RunStore.open_existing(out)
    clips = store.clips()
    assert list(clips.status) == ["ok", "ok"]
    meta = json.loads(clips.iloc[0].meta)
    assert meta["runner"] == "engine" and set(meta["timings"]) == {"load", "generate", "write"}
    assert meta["seed"] == 7 and meta["run_seed"] == 7
    info = probe(out / clips.iloc[0].path)
    assert (info.fps, info.audio_sample_rate, info.frame_count, info.width, info.height) == (24, 16000, 121, 56, 32)


def test_seed_option_overrides_the_run_seed_and_the_cache_key(engine_checkout, tmp_path):
    outcome = run(RunRequest(suite="smoke", models=[f"ovi:{engine_checkout}", f"seeded=ovi:{engine_checkout}"],
                             out=tmp_path / "run", limit=1, languages=["en"], metrics=["speed"], seed=7,
                             progress=False, model_options={"seeded": {"seed": "11"}}))
    clips = outcome.store.clips().set_index("model")
    assert set(clips.status) == {"ok"}
    seeds = sorted(event["seed"] for event in engine_events(tmp_path) if event["event"] == "generate")
    assert seeds == [7, 11]
    assert json.loads(clips.loc["seeded", "meta"])["seed"] == 11
    assert json.loads(clips.loc["seeded", "meta"])["run_seed"] == 7
    assert clips.loc["seeded", "generation_key"] != clips.loc["ovi", "generation_key"]
    assert clips.loc["seeded", "sha256"] != clips.loc["ovi", "sha256"]
    assert outcome.models["seeded"].config()["seed"] == 11 and outcome.models["ovi"].config()["seed"] is None
