"""ltx adapter: the item → pipeline mapping, option checks, the upsampler loader, and runs end to end through
`mheval run` with a TINY RANDOMLY INITIALISED LTX-2 pipeline and spatial upsampler (tests/tiny_ltx.py) saved as a
diffusers directory and as the official single file — real loading, sizing, one- and two-stage text- and
image-to-video generation with audio, sigma schedules, seeds and timings; the clips are noise. No LTX-2.3 weights
were run here."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the ltx extra (diffusers) is not installed; .ci/run installs it")
from PIL import Image

from mheval.adapters import create_adapter, parse_model_spec
from mheval.adapters import ltx
from mheval.adapters.ltx import frame_count, load_upsampler, round_to_multiple
from mheval.cli import main
from mheval.media import probe
from mheval.store import RunStore
from tests.tiny_ltx import build_tiny_ltx, save_official_upsampler, tiny_upsampler

DISTILLED = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0]   # ltx-pipelines' values + 0
STAGE_2 = [0.909375, 0.725, 0.421875, 0.0]

SUITE = """
[suite]
name = "ltx-tiny"
description = "two tiny items for the ltx adapter test"

[[item]]
id = "en-t2v"
language = "en"
seconds = 0.3
resolution = "100x64"
prompt = '''A man smiles.

Dialogue:
<Man, English>: "Hello there."

Background Sound:
<Birds>'''

[[item]]
id = "en-i2v"
language = "en"
seconds = 0.3
resolution = "64x64"
reference_image = "face.png"
prompt = '''A man nods.

Dialogue:
<Man, English>: "Yes."'''
"""
TINY = ["--model-option", "ltx.dtype=float32", "--model-option", "ltx.max_sequence_length=16"]


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    return build_tiny_ltx(tmp_path_factory.mktemp("tiny-random-ltx2"))


@pytest.fixture
def tiny_suite(tmp_path):
    (tmp_path / "ltx-tiny.toml").write_text(SUITE)
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "face.png")
    return tmp_path / "ltx-tiny.toml"


def bare_pipeline_dir(tmp_path):
    """A directory that passes the adapter's construction checks; nothing in it is loaded."""
    (tmp_path / "model_index.json").write_text("{}")
    return tmp_path


def test_items_map_to_the_pipeline_constraints():
    assert frame_count(5.0, 24.0, 8) == 121 and frame_count(4.0, 24.0, 8) == 97
    assert frame_count(0.1, 24.0, 8) == 9                     # never fewer than r + 1
    assert (frame_count(5.0, 25.0, 8) - 1) % 8 == 0
    assert round_to_multiple(448, 32) == 448 and round_to_multiple(100, 32) == 96 and round_to_multiple(10, 32) == 32
    assert round_to_multiple(100, 64) == 128 and round_to_multiple(250, 64) == 256


def test_missing_pipeline_directory_fails_before_any_item(tmp_path):
    with pytest.raises(ValueError, match="needs a diffusers LTX-2.3 pipeline directory"):
        create_adapter(parse_model_spec("ltx"))
    with pytest.raises(ValueError, match="no model_index.json"):
        create_adapter(parse_model_spec(f"ltx:{tmp_path}"))


def test_option_combinations_that_cannot_run_fail_before_any_item(tmp_path):
    directory = bare_pipeline_dir(tmp_path)
    spec = parse_model_spec(f"ltx:{directory}")
    with pytest.raises(ValueError, match="needs the spatial x2 upsampler: pass ltx.upsampler=PATH"):
        create_adapter(spec, {"two_stage": "true"})
    with pytest.raises(ValueError, match="ltx.upsampler is used only by the two-stage flow"):
        create_adapter(spec, {"upsampler": str(directory / "model_index.json")})
    with pytest.raises(ValueError, match="distilled schedule has 8 steps"):
        create_adapter(spec, {"steps": "2"})
    with pytest.raises(ValueError, match="ltx.upsampler: .* does not exist"):
        create_adapter(spec, {"two_stage": "true", "upsampler": str(tmp_path / "missing.safetensors")})
    (directory / "latent_upsampler").mkdir()
    assert create_adapter(spec, {"two_stage": "true"}).upsampler_path == directory / "latent_upsampler"


def test_seed_option_is_part_of_the_cache_key(tmp_path):
    spec = parse_model_spec(f"ltx:{bare_pipeline_dir(tmp_path)}")
    plain, seeded, other = (create_adapter(spec, options) for options in ({}, {"seed": "11"}, {"seed": "12"}))
    assert len({plain.config_hash(), seeded.config_hash(), other.config_hash()}) == 3
    assert seeded.config()["seed"] == 11 and plain.config()["seed"] is None


def test_upsampler_loads_from_the_official_single_file_as_from_a_diffusers_directory(tmp_path):
    model = tiny_upsampler(4)
    model.save_pretrained(tmp_path / "diffusers")
    official = save_official_upsampler(model, tmp_path / "ltx-2.3-spatial-upscaler-x2-tiny.safetensors")
    from_file, from_directory = (load_upsampler(path, torch.float32) for path in (official, tmp_path / "diffusers"))
    def settings(loaded):
        return {key: value for key, value in loaded.config.items() if not key.startswith("_")}

    assert settings(from_file) == settings(from_directory)
    for name, tensor in from_directory.state_dict().items():
        assert torch.equal(from_file.state_dict()[name], tensor), name
    latent = torch.randn(1, 4, 2, 3, 5)
    assert from_file(latent).shape == (1, 4, 2, 6, 10)                # x2 in height and width only
    with pytest.raises(ValueError, match="no model configuration in its safetensors metadata"):
        load_upsampler(save_official_upsampler(model, tmp_path / "bare.safetensors", with_config=False),
                       torch.float32)


def test_image_pipeline_keeps_the_run_dtype(tiny_pipeline):
    """diffusers' from_pipe casts shared components to float32 unless told the dtype: a bfloat16 run must stay so."""
    adapter = create_adapter(parse_model_spec(f"ltx:{tiny_pipeline}"), {"dtype": "bfloat16", "device": "cpu"})
    image_pipeline = adapter.pipeline_for(image=True, unshifted=True)
    assert image_pipeline.transformer is adapter.pipeline.transformer
    assert adapter.pipeline.transformer.dtype == torch.bfloat16 and adapter.pipeline.vae.dtype == torch.bfloat16
    assert image_pipeline.scheduler.config.use_dynamic_shifting is False
    assert adapter.pipeline.scheduler.config.use_dynamic_shifting is True


@pytest.mark.slow
def test_one_stage_run_makes_clips_with_audio_and_records_rounding(tiny_pipeline, tiny_suite):
    out = tiny_suite.parent / "run"
    code = main(["run", "--suite", str(tiny_suite), "--models", f"ltx:{tiny_pipeline}", *TINY,
                 "--model-option", "ltx.schedule=shifted", "--model-option", "ltx.steps=2", "--metrics", "speed",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    rows = RunStore.open_existing(out).clips().set_index("item_id")
    assert set(rows.status) == {"ok"}
    t2v = json.loads(rows.loc["en-t2v", "meta"])
    assert t2v["mode"] == "T2V" and t2v["size"] == [96, 64] and t2v["rounded"] is True
    assert t2v["requested"]["width"] == 100 and (t2v["frames"] - 1) % 2 == 0
    assert set(t2v["timings"]) == {"text_encoding", "base", "decode", "write"}
    sigmas = t2v["stages"]["base"]["sigmas"]                 # 2 uniform sigmas through the resolution shift
    assert len(sigmas) == 3 and sigmas[-1] == 0.0 and sigmas[:2] != [1.0, 0.5]
    assert json.loads(rows.loc["en-i2v", "meta"])["mode"] == "I2V"
    info = probe(out / rows.loc["en-t2v", "path"])
    assert (info.width, info.height, info.frame_count) == (96, 64, t2v["frames"]) and info.has_audio
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["ltx"]["config"]["backend"] == "diffusers"
    assert any(w["path"].endswith("diffusion_pytorch_model.safetensors") for w in manifest["models"]["ltx"]["weights"])


@pytest.mark.slow
def test_two_stage_run_upsamples_once_per_run_and_records_each_stage(tiny_pipeline, tiny_suite, monkeypatch):
    official = save_official_upsampler(tiny_upsampler(4), tiny_suite.parent / "spatial-upscaler-x2.safetensors")
    loads = []

    def counted(path, dtype):
        loads.append(path)
        return load_upsampler(path, dtype)

    monkeypatch.setattr(ltx, "load_upsampler", counted)
    out = tiny_suite.parent / "run"
    code = main(["run", "--suite", str(tiny_suite), "--models", f"ltx:{tiny_pipeline}", *TINY,
                 "--model-option", "ltx.two_stage=true", "--model-option", f"ltx.upsampler={official}",
                 "--metrics", "speed", "--out", str(out), "--no-progress"])
    assert code == 0
    assert loads == [official]                                  # one upsampler for the whole run
    rows = RunStore.open_existing(out).clips().set_index("item_id")
    assert set(rows.status) == {"ok"}
    t2v = json.loads(rows.loc["en-t2v", "meta"])
    assert t2v["two_stage"] is True and t2v["size"] == [128, 64] and t2v["rounded"] is True   # x64 with two stages
    assert set(t2v["timings"]) == {"text_encoding", "stage1", "upsample", "stage2", "decode", "write"}
    stages = t2v["stages"]
    assert stages["stage1"]["size"] == [64, 32] and stages["stage2"]["size"] == [128, 64]
    assert stages["stage1"]["sigmas"] == DISTILLED and stages["stage2"]["sigmas"] == STAGE_2   # not shifted
    assert stages["stage2"]["noise_scale"] == STAGE_2[0]
    assert stages["upsample"]["latent_size"] == [128 // 2, 64 // 2]   # the tiny VAE compresses 2x
    i2v = json.loads(rows.loc["en-i2v", "meta"])
    assert i2v["mode"] == "I2V" and i2v["stages"]["stage1"]["size"] == [32, 32]
    info = probe(out / rows.loc["en-t2v", "path"])
    assert (info.width, info.height, info.frame_count) == (128, 64, t2v["frames"]) and info.has_audio
    weights = json.loads((out / "manifest.json").read_text())["models"]["ltx"]["weights"]
    assert any(w["path"] == str(official) for w in weights)


@pytest.mark.slow
def test_seed_option_changes_the_clip_and_its_key(tiny_pipeline, tiny_suite):
    out = tiny_suite.parent / "run"
    code = main(["run", "--suite", str(tiny_suite), "--models", f"ltx:{tiny_pipeline},seeded=ltx:{tiny_pipeline}",
                 "--languages", "en", "--limit", "1", "--seed", "7", *TINY, *[arg.replace("ltx.", "seeded.")
                                                                          for arg in TINY],
                 "--model-option", "ltx.schedule=shifted", "--model-option", "ltx.steps=2",
                 "--model-option", "seeded.schedule=shifted", "--model-option", "seeded.steps=2",
                 "--model-option", "seeded.seed=11", "--metrics", "speed", "--out", str(out), "--no-progress"])
    assert code == 0
    clips = RunStore.open_existing(out).clips().set_index("model")
    assert set(clips.status) == {"ok"} and set(clips.seed) == {7}
    assert json.loads(clips.loc["seeded", "meta"])["seed"] == 11 and json.loads(clips.loc["ltx", "meta"])["seed"] == 7
    assert clips.loc["seeded", "generation_key"] != clips.loc["ltx", "generation_key"]
    assert clips.loc["seeded", "sha256"] != clips.loc["ltx", "sha256"]


@pytest.mark.slow
def test_non_finite_output_is_a_failed_clip_not_a_broken_file(tiny_pipeline, tiny_suite):
    """One shifted step with the LTX scheduler's terminal stretch divides by zero in diffusers: NaN latents."""
    out = tiny_suite.parent / "run"
    code = main(["run", "--suite", str(tiny_suite), "--models", f"ltx:{tiny_pipeline}", "--languages", "en",
                 "--limit", "1", *TINY, "--model-option", "ltx.schedule=shifted", "--model-option", "ltx.steps=1",
                 "--metrics", "speed", "--out", str(out), "--no-progress"])
    assert code == 3
    clip = RunStore.open_existing(out).clips().iloc[0]
    assert clip.status == "failed" and "NaN or infinite" in clip.error and clip.path is None
