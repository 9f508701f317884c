"""The whole pipeline: sizes, presets, the tiny random stack end to end (T2V, TI2V, SR), checkpoint loading, and
the pipeline's sampling wired to the same loops as the `sampling_loop` fixture."""
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from dit_fixture_utils import build_fixture_model
from mheval.media import probe
from model.checkpoint import save_checkpoint
from model.pipeline import (PRESETS, TINY_DIT, TINY_RANDOM_LABEL, CheckpointPaths, MagiHumanPipeline, Preset,
                            audio_samples, clip_shape, load_dit_directory, resolve_preset, round_resolution,
                            tiny_random_components)
from model.sampling import SamplerConfig
from model.shapes import LatentShape, latent_side
from model.text_encoder import TextEmbedding
from parity_fixture import load_fixture, rel_err
from tiny_t5gemma import write_tiny_t5gemma

AAC_FRAME = 1024  # the decoded AAC track may run up to one frame past the written samples
STAGES = {"text encoding", "base denoising", "video decode", "audio decode", "write mp4"}


# ---------------------------------------------------------------------------------------------------------------
# Sizes and presets


@pytest.mark.parametrize("seconds", [1, 2, 3, 4, 5, 10])
def test_seconds_to_frames(seconds):
    shape = clip_shape(seconds, 448, 256)
    assert shape.audio_frames == 25 * seconds + 1
    assert shape.frames == 25 * seconds // 4 + 1
    assert shape.pixel_frames == 4 * (shape.frames - 1) + 1
    assert audio_samples(shape.audio_frames) == int(shape.audio_frames * 2048 * 441 / 512)


def test_four_seconds_is_the_spec_example():
    shape = clip_shape(4, 448, 256)
    assert (shape.audio_frames, shape.frames, shape.pixel_frames) == (101, 26, 101)
    assert audio_samples(shape.audio_frames) == 178_164   # 206848·441/512 exactly (spec 3.4's 178,166 is a slip)
    assert (shape.height, shape.width) == (16, 28)


@pytest.mark.parametrize("size, rounded", [((448, 256), (448, 256)), ((480, 272), (480, 256)),
                                           ((1920, 1088), (1920, 1088)), ((1000, 700), (992, 672)),
                                           ((63, 95), (32, 64))])
def test_resolution_rounds_down_to_multiples_of_32(size, rounded):
    assert round_resolution(*size) == rounded
    shape = clip_shape(1, *size)
    assert (16 * shape.width, 16 * shape.height) == rounded


@pytest.mark.parametrize("seconds, width, height", [(0, 448, 256), (2.5, 448, 256), (True, 448, 256),
                                                    (2, 31, 256), (2, 448, 16)])
def test_impossible_requests_are_refused(seconds, width, height):
    with pytest.raises(ValueError):
        clip_shape(seconds, width, height)


def test_presets_are_the_four_shipped_configurations():
    assert set(PRESETS) == {"base", "distill", "sr_540p", "sr_1080p"}
    base, distill = resolve_preset("base"), resolve_preset("distill")
    assert (base.dit, base.sampler.num_steps, base.sampler.cfg_number, base.sr_model) == ("base", 32, 2, None)
    assert (distill.dit, distill.sampler.num_steps, distill.sampler.cfg_number) == ("distill", 8, 1)
    sr_540p, sr_1080p = resolve_preset("sr_540p"), resolve_preset("sr_1080p")
    assert (sr_540p.dit, sr_540p.sr_model, sr_540p.sr_size, sr_540p.sr_local_attention) == \
        ("base", "540p_sr", (896, 512), False)
    assert (sr_1080p.dit, sr_1080p.sr_model, sr_1080p.sr_size, sr_1080p.sr_local_attention) == \
        ("base", "1080p_sr", (1920, 1088), True)
    for preset in (sr_540p, sr_1080p):
        assert (preset.sampler.sr_num_steps, preset.sampler.sr_cfg_number) == (5, 1)
    with pytest.raises(ValueError, match="sr_540p"):
        resolve_preset("540p")


def test_tiny_stack_is_deterministic_labelled_and_1080p_sr_is_local():
    first, again, other = (tiny_random_components(PRESETS["sr_1080p"], seed) for seed in (0, 0, 1))
    assert first.label == TINY_RANDOM_LABEL and first.random_weights
    for name in ("dit", "sr_dit", "turbo_vaed", "wan_vae", "audio_vae", "text_encoder"):
        a, b, c = (getattr(comp, name).state_dict() for comp in (first, again, other))
        assert all(torch.equal(a[key], b[key]) for key in a), name
        assert not all(torch.equal(a[key], c[key]) for key in a), name
    assert first.sr_dit.cfg.local_attn_layers and not first.dit.cfg.local_attn_layers
    assert tiny_random_components(PRESETS["distill"]).sr_dit is None


# ---------------------------------------------------------------------------------------------------------------
# The tiny stack end to end


def _check_clip(path, result, seconds, width, height):
    shape = clip_shape(seconds, width, height)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.frame_count) == (width, height, 25.0, shape.pixel_frames)
    assert result.frames.shape == (shape.pixel_frames, height, width, 3)
    expected = audio_samples(shape.audio_frames)
    assert result.audio.shape == (expected, 2) and np.isfinite(result.audio).all()
    assert info.has_audio and info.audio_sample_rate == 44_100
    assert expected <= round(info.audio_seconds * 44_100) <= expected + AAC_FRAME


def test_tiny_t2v_two_seconds(tmp_path):
    pipe = MagiHumanPipeline.tiny_random("distill", device="cpu")
    events = []
    result = pipe.generate("A woman says: good morning.", seconds=2, width=128, height=64, seed=7,
                           out=tmp_path / "t2v.mp4", progress=lambda *event: events.append(event))
    _check_clip(tmp_path / "t2v.mp4", result, 2, 128, 64)
    assert set(result.timings) == STAGES and all(t >= 0 for t in result.timings.values())
    assert ("base denoising", 8, 8) in events and ("video decode", 1, 1) in events
    assert result.label == TINY_RANDOM_LABEL and result.seed == 7


def test_tiny_ti2v_with_super_resolution(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 200, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    pipe = MagiHumanPipeline.tiny_random("sr_540p", device="cpu")
    result = pipe.generate("A man says: hello.", image=tmp_path / "ref.png", seconds=2, width=96, height=64,
                           sr_size=(160, 96), out=tmp_path / "ti2v.mp4")
    _check_clip(tmp_path / "ti2v.mp4", result, 2, 160, 96)
    assert set(result.timings) == STAGES | {"image encoding", "super-resolution"}
    # the reference image's latent is latent frame 0 of the output, at base and at SR resolution
    assert torch.equal(result.latents.base_video[:, :, :1], pipe.encode_image(tmp_path / "ref.png", 96, 64))
    assert torch.equal(result.latents.video[:, :, :1], pipe.encode_image(tmp_path / "ref.png", 160, 96))
    assert result.latents.video.shape[-2:] == (latent_side(96), latent_side(160))


def test_wan_decoder_is_the_fallback(tmp_path):
    components = replace(tiny_random_components(PRESETS["distill"]), turbo_vaed=None)
    pipe = MagiHumanPipeline(components, "distill", device="cpu")
    assert pipe.decoder == "wan"
    result = pipe.generate("A man says: hello.", seconds=1, width=64, height=64, out=tmp_path / "wan.mp4")
    _check_clip(tmp_path / "wan.mp4", result, 1, 64, 64)
    assert np.array_equal(result.frames, pipe.decode_video(result.latents.video))
    with pytest.raises(ValueError, match="no video decoder"):
        MagiHumanPipeline(replace(components, wan_vae=None), "distill", device="cpu")
    with pytest.raises(ValueError, match="needs the Wan2.2 VAE"):
        MagiHumanPipeline(replace(components, wan_vae=None), "distill", device="cpu", decoder="wan")


def test_same_seed_same_latents_other_seed_other_latents():
    pipe = MagiHumanPipeline.tiny_random("distill", device="cpu")
    text, negative = pipe.encode_text("A man says: hello.")
    shape = clip_shape(1, 64, 64)
    first, again, other = (pipe.sample(text, negative, shape, seed) for seed in (3, 3, 4))
    assert torch.equal(first.video, again.video) and torch.equal(first.audio, again.audio)
    assert not torch.equal(first.video, other.video)


def test_offload_keeps_one_network_resident():
    pipe = MagiHumanPipeline.tiny_random("distill", device="cpu", offload=True)
    pipe.encode_text("hi")
    assert pipe.residency.resident is pipe.components.text_encoder
    pipe.sample(*pipe.encode_text("hi"), clip_shape(1, 64, 64), seed=0)
    assert pipe.residency.resident is pipe.components.dit


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def test_dit_checkpoint_directory_round_trip(tmp_path):
    dit = tiny_random_components(PRESETS["distill"]).dit
    save_checkpoint({k: v for k, v in dit.state_dict().items() if k != "adapter.rope.bands"}, tmp_path / "base",
                    num_shards=2)
    config = {"num_layers": TINY_DIT.num_layers, "hidden_size": TINY_DIT.hidden_size, "head_dim": TINY_DIT.head_dim,
              "num_query_groups": TINY_DIT.num_query_groups, "mm_layers": list(TINY_DIT.mm_layers),
              "gelu7_layers": list(TINY_DIT.gelu7_layers), "text_in_channels": TINY_DIT.text_in_channels}
    (tmp_path / "base" / "config.json").write_text(json.dumps(config))
    loaded = load_dit_directory(tmp_path / "base")
    expected, got = dit.state_dict(), loaded.state_dict()
    assert set(expected) == set(got) and all(torch.equal(expected[k], got[k]) for k in expected)
    assert load_dit_directory(tmp_path / "base", sr_1080p=True).cfg.local_attn_layers


def test_missing_checkpoints_name_the_path_and_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)^DiT checkpoint directory not found at \S*distill\b.*t5gemma"):
        CheckpointPaths.find(tmp_path, PRESETS["distill"])
    (tmp_path / "base").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^SR DiT checkpoint directory not found at \S*540p_sr\b"):
        CheckpointPaths.find(tmp_path, PRESETS["sr_540p"])
    with pytest.raises(FileNotFoundError, match=r"^a video decoder .* not found at \S*turbo_vae\b"):
        CheckpointPaths.find(tmp_path, PRESETS["base"])
    (tmp_path / "turbo_vae").mkdir()
    (tmp_path / "turbo_vae" / "TurboV3-Wan22-TinyShallow_7_7.json").write_text("{}")
    (tmp_path / "turbo_vae" / "checkpoint-340000.ckpt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"^Stable-Audio-Open VAE not found at \S*stable-audio-open-1.0\b"):
        CheckpointPaths.find(tmp_path, PRESETS["base"])


# ---------------------------------------------------------------------------------------------------------------
# The pipeline's sampling is the original loop (sampling_loop fixture: base 32×2 + SR, distilled 8 steps)

SIDECAR, REF = load_fixture("sampling_loop")


@pytest.mark.parametrize("run", sorted(SIDECAR["call"]))
def test_pipeline_sampling_reproduces_the_original(run, tmp_path):
    call = SIDECAR["call"][run]
    dit = build_fixture_model(re.search(r"(\w+)\.safetensors", SIDECAR["weights"]).group(1), tmp_path)
    with_sr = call["sr_width"] is not None
    sampler = SamplerConfig(num_steps=call["br_num_inference_steps"], cfg_number=call["cfg_number"],
                            sr_num_steps=call["sr_num_inference_steps"], sr_cfg_number=call.get("sr_cfg_number", 1),
                            shift=call["shift"])
    preset = Preset(run, "base", sampler, "sr" if with_sr else None,
                    (call["sr_width"], call["sr_height"]) if with_sr else None)
    components = replace(tiny_random_components(preset), dit=dit, sr_dit=dit if with_sr else None)
    pipe = MagiHumanPipeline(components, preset, device="cpu")
    text, negative = (TextEmbedding(REF[f"text.{name}"], int(REF[f"text.{name}_len"]))
                      for name in ("context", "context_null"))
    shape = LatentShape.for_request(call["seconds"], call["br_width"], call["br_height"])
    sr_shape = (latent_side(call["sr_height"]), latent_side(call["sr_width"])) if with_sr else None
    result = pipe.sample(text, negative, shape, call["seed"], sr_shape)
    assert rel_err(result.video, REF[f"{run}.final_video"]) <= 1e-4
    assert rel_err(result.audio, REF[f"{run}.final_audio"]) <= 1e-4


def write_published_layout(root, components, text_width: int) -> None:
    """The tiny stack's weights in the published checkpoint layout, in each original on-disk format; not the Wan2.2
    VAE, whose .pth carries no config (the loader builds the released widths)."""
    from safetensors.torch import save_file

    from model.pipeline import AUDIO_DIR, TEXT_DIR, TINY_AUDIO_DECODER, TINY_AUDIO_ENCODER, TINY_TURBO_VAED, TURBO_DIR

    dit_config = {"num_layers": TINY_DIT.num_layers, "hidden_size": TINY_DIT.hidden_size,
                  "head_dim": TINY_DIT.head_dim, "num_query_groups": TINY_DIT.num_query_groups,
                  "mm_layers": list(TINY_DIT.mm_layers), "gelu7_layers": list(TINY_DIT.gelu7_layers),
                  "text_in_channels": text_width}
    for name in ("base", "540p_sr"):
        save_checkpoint(components.dit.state_dict(), root / name, num_shards=2, compress=name == "540p_sr")
        (root / name / "config.json").write_text(json.dumps(dit_config))
    (root / TURBO_DIR).mkdir()
    turbo_config = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_TURBO_VAED.__dict__.items()}
    (root / TURBO_DIR / "TurboV3-Wan22-TinyShallow_7_7.json").write_text(json.dumps(turbo_config))
    ema = {f"module.{k}": v for k, v in components.turbo_vaed.state_dict().items()}
    torch.save({"ema_state_dict": ema}, root / TURBO_DIR / "checkpoint-340000.ckpt")
    (root / AUDIO_DIR).mkdir()

    def oobleck(cfg, io_key):
        return {"type": "oobleck", "config": {"channels": cfg.channels, "c_mults": list(cfg.c_mults),
                                              "strides": list(cfg.strides), "latent_dim": cfg.latent_dim,
                                              io_key: 2, "use_snake": True, "final_tanh": False}}
    pretransform = {"bottleneck": {"type": "vae"}, "encoder": oobleck(TINY_AUDIO_ENCODER, "in_channels"),
                    "decoder": oobleck(TINY_AUDIO_DECODER, "out_channels")}
    (root / AUDIO_DIR / "model_config.json").write_text(
        json.dumps({"sample_rate": 44100, "model": {"pretransform": {"config": pretransform}}}))
    save_file({f"pretransform.model.{k}": v.contiguous() for k, v in components.audio_vae.state_dict().items()},
              root / AUDIO_DIR / "model.safetensors")
    write_tiny_t5gemma(root / TEXT_DIR, width=text_width)


def test_published_layout_loads_and_generates(tmp_path):
    components = tiny_random_components(PRESETS["sr_540p"])
    write_published_layout(tmp_path / "ckpt", components, TINY_DIT.text_in_channels)
    pipe = MagiHumanPipeline.from_checkpoints(tmp_path / "ckpt", "sr_540p", device="cpu")
    assert pipe.label == "magihuman" and not pipe.components.random_weights and pipe.decoder == "turbo"
    for name in ("dit", "sr_dit", "turbo_vaed", "audio_vae"):
        expected = getattr(components, name if name != "sr_dit" else "dit").state_dict()
        loaded = getattr(pipe.components, name).state_dict()
        assert all(torch.equal(expected[key], loaded[key]) for key in expected), name
    result = pipe.generate("a man says hello", seconds=1, width=64, height=64, sr_size=(96, 64),
                           out=tmp_path / "clip.mp4")
    _check_clip(tmp_path / "clip.mp4", result, 1, 96, 64)
    used = {p.relative_to(tmp_path / "ckpt").parts[0] for p in pipe.components.weight_files}
    assert used == {"base", "540p_sr", "turbo_vae", "stable-audio-open-1.0", "t5gemma-9b-9b-ul2"}
    with pytest.raises(ValueError, match="Wan2.2"):
        pipe.generate("a man says hello", image=Image.new("RGB", (64, 64)), seconds=1, width=64, height=64)
