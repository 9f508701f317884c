"""ltx adapter: the item → pipeline mapping, and a run end to end through `mheval run` with a TINY RANDOMLY
INITIALISED LTX-2 pipeline (tests/tiny_ltx.py) saved as a diffusers directory — real loading, sizing, text- and
image-to-video generation with audio, and timings; the clips are noise. No LTX-2.3 weights were run here."""
import json

import numpy as np
import pytest
from PIL import Image

from mheval.adapters import create_adapter, parse_model_spec
from mheval.adapters.ltx import frame_count, round_to_multiple
from mheval.cli import main
from mheval.media import probe
from tests.tiny_ltx import build_tiny_ltx

SUITE = """
[suite]
name = "ltx-tiny"
description = "two tiny items for the ltx adapter test"

[[item]]
id = "en-t2v"
language = "en"
seconds = 0.5
resolution = "100x64"
prompt = '''A man smiles.

Dialogue:
<Man, English>: "Hello there."

Background Sound:
<Birds>'''

[[item]]
id = "en-i2v"
language = "en"
seconds = 0.5
resolution = "64x64"
reference_image = "face.png"
prompt = '''A man nods.

Dialogue:
<Man, English>: "Yes."'''
"""


def test_items_map_to_the_pipeline_constraints():
    assert frame_count(5.0, 24.0, 8) == 121 and frame_count(4.0, 24.0, 8) == 97
    assert frame_count(0.1, 24.0, 8) == 9                     # never fewer than r + 1
    assert (frame_count(5.0, 25.0, 8) - 1) % 8 == 0
    assert round_to_multiple(448, 32) == 448 and round_to_multiple(100, 32) == 96 and round_to_multiple(10, 32) == 32


def test_missing_pipeline_directory_fails_before_any_item(tmp_path):
    with pytest.raises(ValueError, match="needs a diffusers LTX-2.3 pipeline directory"):
        create_adapter(parse_model_spec("ltx"))
    with pytest.raises(ValueError, match="no model_index.json"):
        create_adapter(parse_model_spec(f"ltx:{tmp_path}"))


@pytest.mark.slow
def test_run_with_a_tiny_random_pipeline_makes_clips_with_audio_and_records_rounding(tmp_path):
    pipeline_dir = build_tiny_ltx(tmp_path / "tiny-random-ltx2")
    (tmp_path / "ltx-tiny.toml").write_text(SUITE)
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "face.png")
    out = tmp_path / "run"
    code = main(["run", "--suite", str(tmp_path / "ltx-tiny.toml"), "--models", f"ltx:{pipeline_dir}",
                 "--model-option", "ltx.steps=2", "--model-option", "ltx.dtype=float32",
                 "--model-option", "ltx.max_sequence_length=16", "--metrics", "speed", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    clips = {clip["item_id"]: clip for clip in json.loads((out / "exports" / "results.json").read_text())["clips"]}
    assert set(clips) == {"en-t2v", "en-i2v"} and all(c["clip_status"] == "ok" for c in clips.values())
    from mheval.store import RunStore

    store = RunStore.open_existing(out)
    rows = store.clips().set_index("item_id")
    t2v = json.loads(rows.loc["en-t2v", "meta"])
    assert t2v["mode"] == "T2V" and t2v["size"] == [96, 64] and t2v["rounded"] is True
    assert t2v["requested"]["width"] == 100 and (t2v["frames"] - 1) % 2 == 0
    assert set(t2v["timings"]) == {"text_encoding", "base", "decode", "write"}
    assert json.loads(rows.loc["en-i2v", "meta"])["mode"] == "I2V"
    info = probe(out / rows.loc["en-t2v", "path"])
    assert (info.width, info.height, info.frame_count) == (96, 64, t2v["frames"]) and info.has_audio
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["ltx"]["config"]["backend"] == "diffusers"
    assert any(w["path"].endswith("diffusion_pytorch_model.safetensors") for w in manifest["models"]["ltx"]["weights"])
