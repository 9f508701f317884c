"""End-to-end sampling with the tiny DiT (base 32×2 + SR, and distilled 8 steps) against `sampling_loop`."""

import re

import pytest

from dit_fixture_utils import build_fixture_model
from model.sampling import SamplerConfig, dit_velocity_fn, generate_latents
from model.shapes import LatentShape, latent_side
from model.text_encoder import TextEmbedding
from parity_fixture import load_fixture, rel_err

SIDECAR, REF = load_fixture("sampling_loop")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    """Base and SR model: the DiT whose weights the sidecar names, on the fp32 path."""
    source = re.search(r"(\w+)\.safetensors", SIDECAR["weights"]).group(1)
    return build_fixture_model(source, tmp_path_factory.mktemp("dit"))


def text(name: str) -> TextEmbedding:
    return TextEmbedding(REF[f"text.{name}"], int(REF[f"text.{name}_len"]))


@pytest.mark.parametrize("run", sorted(SIDECAR["call"]))
def test_sampling_matches_the_original(run, dit):
    call = SIDECAR["call"][run]
    shape = LatentShape.for_request(call["seconds"], call["br_width"], call["br_height"])
    config = SamplerConfig(num_steps=call["br_num_inference_steps"], cfg_number=call["cfg_number"],
                           sr_num_steps=call["sr_num_inference_steps"], sr_cfg_number=call.get("sr_cfg_number", 1),
                           shift=call["shift"])
    with_sr = call["sr_width"] is not None
    sr_size = (latent_side(call["sr_height"]), latent_side(call["sr_width"])) if with_sr else None
    states = []
    result = generate_latents(dit_velocity_fn(dit, "v2"), text("context"), text("context_null"), shape, config,
                              call["seed"], sr_velocity_fn=dit_velocity_fn(dit, "v1"), sr_size=sr_size,
                              on_step=states.append)

    base_states = [s for s in states if s.stage == "base"]
    assert len(base_states) == config.num_steps
    for state in base_states:
        assert rel_err(state.video, REF[f"{run}.base_video_latents"][state.index]) <= TOLERANCE, state.index
        assert rel_err(state.audio, REF[f"{run}.base_audio_latents"][state.index]) <= TOLERANCE, state.index
    sr_states = [s for s in states if s.stage == "sr"]
    assert len(sr_states) == (config.sr_num_steps if with_sr else 0)
    for state in sr_states:
        assert rel_err(state.video, REF[f"{run}.sr_video_latents"][state.index]) <= TOLERANCE, state.index
        assert rel_err(state.audio, REF[f"{run}.sr_audio_input"]) <= TOLERANCE, state.index
    assert rel_err(result.video, REF[f"{run}.final_video"]) <= TOLERANCE
    assert rel_err(result.audio, REF[f"{run}.final_audio"]) <= TOLERANCE
    assert set(result.stage_seconds) == ({"base denoising", "super-resolution"} if with_sr else {"base denoising"})


def test_latent_sizes_follow_the_spec():
    """Spec 3.4/4.7: 4 s gives Na = 101, T = 26, 101 pixel frames; sides round down to multiples of 32 pixels."""
    shape = LatentShape.for_request(4, 448, 256)
    assert (shape.audio_frames, shape.frames, shape.pixel_frames) == (101, 26, 101)
    assert (shape.height, shape.width) == (16, 28)
    assert [latent_side(pixels) for pixels in (272, 512, 896, 1088, 1920)] == [16, 32, 56, 68, 120]
