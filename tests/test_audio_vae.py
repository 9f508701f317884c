"""Stable-Audio "Oobleck" VAE against the `sa_audio_vae_tiny` parity fixture (README section 9)."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from model.audio_vae import (LONG_AUDIO_OVERLAP, LONG_AUDIO_WINDOW_S, PIPELINE_SAMPLE_RATE, AudioVAE, OobleckConfig,
                             load_audio_vae, merge_overlapping_windows, resample_to_output_rate)
from parity_fixture import load_fixture, rel_err

TOL = 5e-5
RESAMPLE_ABS_TOL = 1e-5
MERGE_ABS_TOL = 1e-6


@pytest.fixture(scope="module")
def fixture():
    return load_fixture("sa_audio_vae_tiny")


def write_model_dir(path, sidecar, tensors, drop_key=None):
    """An SAO-style directory: model_config.json and model.safetensors with `pretransform.model.*` keys."""
    (path / "model_config.json").write_text(json.dumps(sidecar["config"]))
    weights = {"pretransform.model." + k.removeprefix("param."): v
               for k, v in tensors.items() if k.startswith("param.") and k != drop_key}
    weights["conditioner.unrelated.weight"] = torch.zeros(1)    # the rest of the SAO checkpoint is skipped
    save_file(weights, str(path / "model.safetensors"))
    return path


@pytest.fixture(scope="module")
def vae(fixture, tmp_path_factory):
    return load_audio_vae(write_model_dir(tmp_path_factory.mktemp("sao"), *fixture))


@pytest.fixture(scope="module")
def stereo_input(fixture):
    _, t = fixture
    return t["input.waveform_mono"][None].repeat(2, 1)          # unbatched [2, N], as the pipeline passes it


def test_encoder(vae, fixture, stereo_input):
    _, t = fixture
    with torch.no_grad():
        assert rel_err(vae.encoder(stereo_input[None]), t["out.encode_pre_bottleneck"]) <= TOL


def test_encode_samples_posterior_from_global_rng(vae, fixture, stereo_input):
    sidecar, t = fixture
    torch.manual_seed(sidecar["seed"] + 2)
    assert rel_err(vae.encode(stereo_input), t["out.encode_latent"]) <= TOL


def test_decode_unbatched_latent(vae, fixture):
    _, t = fixture
    waveform = vae.decode_latent(t["input.latent_audio"].squeeze(0).T)
    assert rel_err(waveform, t["out.decode"]) <= TOL


def test_resample(fixture):
    _, t = fixture
    resampled = resample_to_output_rate(t["out.decode"].squeeze(0).T.numpy())
    assert resampled.dtype == np.float32
    assert np.abs(resampled - t["out.decode_resampled_44k1"].numpy()).max() <= RESAMPLE_ABS_TOL


def test_pipeline_decode(vae, fixture):
    """DiT-space latent [1, Na, 64] -> 44.1 kHz stereo [N, 2]."""
    _, t = fixture
    waveform = vae.decode(t["input.latent_audio"])
    assert np.abs(waveform - t["out.decode_resampled_44k1"].numpy()).max() <= RESAMPLE_ABS_TOL


def test_merge(fixture):
    _, t = fixture
    n_chunks = len([k for k in t if k.startswith("merge.chunk")])
    merged = merge_overlapping_windows([t[f"merge.chunk{i}"] for i in range(n_chunks)], overlap_ratio=0.5)
    assert (merged - t["merge.out"]).abs().max() <= MERGE_ABS_TOL


def test_a2v_encode_path(vae, fixture, stereo_input):
    """The a2v path's encode (audio up to 29 s: one encode, sampled posterior) gives the fixture's latent, laid out
    as DiT audio tokens [1, Na, 64]; its posterior noise comes from a generator when one is given."""
    sidecar, t = fixture
    torch.manual_seed(sidecar["seed"] + 2)
    latent = vae.encode_audio(stereo_input)
    assert rel_err(latent, t["out.encode_latent"].transpose(1, 2)) <= TOL
    generator = torch.Generator().manual_seed(sidecar["seed"] + 2)
    assert torch.equal(vae.encode_audio(stereo_input, generator), latent)


def tiny_vae() -> AudioVAE:
    """A 1-channel Oobleck with one stride-2 stage: a latent every 2 samples."""
    cfg = dict(channels=1, c_mults=(1,), strides=(2,))
    return AudioVAE(OobleckConfig(latent_dim=2, **cfg), OobleckConfig(latent_dim=1, **cfg)).eval()


def test_long_audio_windows_start_every_half_window_and_cross_fade():
    """Audio longer than a window: windows of W samples start every W/2 samples until one reaches the end, each is
    zero-padded and encoded alone (posterior draws in window order), and the latents are cross-faded over
    int(L/2) of a window's L latents. With W = 18 samples (L = 9 latents, hop 2) the sample step is 9 samples,
    4.5 latents, while the merge steps by 5 latents, as the original does."""
    vae = tiny_vae()
    window_seconds = 18 / PIPELINE_SAMPLE_RATE
    waveform = torch.randn(2, 40, generator=torch.Generator().manual_seed(3))
    latent = vae.encode_audio(waveform, torch.Generator().manual_seed(0), window_seconds=window_seconds)
    assert latent.shape == (1, math.ceil(40 * 9 / 18), 1)

    generator = torch.Generator().manual_seed(0)
    starts = [0, 9, 18, 27]                  # 27 + 18 >= 40: the last window
    windows = [vae.encode(F.pad(waveform[:, s:s + 18], (0, 18 - waveform[:, s:s + 18].shape[1])), generator)[0, 0]
               for s in starts]
    assert all(len(w) == 9 for w in windows)
    mine = latent[0, :, 0]
    assert torch.equal(mine[:6], windows[0][:6])                        # before any overlap, and its first frame
    for k in range(1, 4):                                               # window 0 fading out, window 1 fading in
        assert torch.allclose(mine[5 + k], windows[0][5 + k] * (4 - k) / 4 + windows[1][k] * k / 4)
    assert torch.equal(mine[9:10], windows[1][4:5])                     # window 1 alone
    assert torch.allclose(mine[18], windows[2][8] / 4 + windows[3][3] * 3 / 4)   # window 3 starts at latent 15
    assert torch.equal(mine[19], windows[3][4])                         # the last kept latent (⌈40·9/18⌉ = 20)


def test_audio_up_to_one_window_is_one_encode():
    vae = tiny_vae()
    waveform = torch.randn(2, 18, generator=torch.Generator().manual_seed(3))
    latent = vae.encode_audio(waveform, torch.Generator().manual_seed(0), window_seconds=18 / PIPELINE_SAMPLE_RATE)
    assert torch.equal(latent, vae.encode(waveform, torch.Generator().manual_seed(0)).transpose(1, 2))


@pytest.mark.slow
def test_long_audio_windows_are_cross_faded(vae):
    """Audio past 29 s: the latent before the first overlap is the first window's own encode."""
    window = LONG_AUDIO_WINDOW_S * PIPELINE_SAMPLE_RATE
    waveform = torch.rand(2, window + 10 * PIPELINE_SAMPLE_RATE, generator=torch.Generator().manual_seed(1)) - 0.5
    latent = vae.encode_audio(waveform, torch.Generator().manual_seed(0))
    assert latent.shape == (1, math.ceil(waveform.shape[1] / vae.hop), vae.latent_dim)
    first = vae.encode(waveform[:, :window // vae.hop * vae.hop], torch.Generator().manual_seed(0)).transpose(1, 2)
    solo = first.shape[1] - int(first.shape[1] * LONG_AUDIO_OVERLAP)
    assert torch.allclose(latent[:, :solo], first[:, :solo])
    assert not torch.allclose(latent[:, solo + 1:first.shape[1]], first[:, solo + 1:])


def test_strict_load_reports_missing_key(fixture, tmp_path):
    with pytest.raises(RuntimeError, match=r"decoder\.layers\.7\.weight_g"):
        load_audio_vae(write_model_dir(tmp_path, *fixture, drop_key="param.decoder.layers.7.weight_g"))


def test_random_init_decodes_finite_audio(fixture):
    """A freshly built model (the tiny random stack) gives a finite waveform of the right length."""
    sidecar, _ = fixture
    vae = AudioVAE.from_pretransform_config(sidecar["config"]["model"]["pretransform"]["config"])
    waveform = vae.decode(torch.randn(1, 3, vae.latent_dim))
    assert waveform.shape == (int(3 * vae.hop * 441 / 512), 2) and np.isfinite(waveform).all()
