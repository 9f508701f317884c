"""Wan2.2 VAE against the `wan22_vae_tiny` parity fixture (README section 8)."""

import pytest
import torch
from safetensors.torch import save_file

from model.wan_vae import WanVAE, WanVAEConfig, load_wan_vae
from parity_fixture import load_fixture, rel_err

FP32_TOL = 5e-5
BF16_TOL = 5e-2


@pytest.fixture(scope="module")
def fixture():
    return load_fixture("wan22_vae_tiny")


@pytest.fixture(scope="module")
def checkpoint(fixture, tmp_path_factory):
    """The fixture's parameters written as a checkpoint file under their original key names."""
    _, tensors = fixture
    path = tmp_path_factory.mktemp("wan") / "Wan2.2_VAE.safetensors"
    save_file({k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")}, str(path))
    return path


@pytest.fixture(scope="module")
def vae(fixture, checkpoint):
    sidecar, _ = fixture
    return load_wan_vae(checkpoint, WanVAEConfig.from_dict(sidecar["config"]))


@pytest.mark.parametrize("name", ["video", "image"])
def test_encode(vae, fixture, name):
    _, t = fixture
    assert rel_err(vae.encode(t[f"input.{name}"]), t[f"out.encode_{name}"]) <= FP32_TOL


def test_decode_raw(vae, fixture):
    _, t = fixture
    assert rel_err(vae.decode_raw(t["out.encode_video"]), t["out.decode_raw"]) <= FP32_TOL


def test_decode_as_pipeline_calls_it(vae, fixture):
    """4-D latent (batch squeezed away) in, 5-D video clamped to [-1, 1] out."""
    _, t = fixture
    video = vae.decode(t["out.encode_video"].squeeze(0))
    assert video.dtype == torch.float32 and video.abs().max() <= 1.0
    assert rel_err(video, t["out.decode"]) <= FP32_TOL


def test_encode_bf16(fixture, checkpoint):
    sidecar, t = fixture
    vae = load_wan_vae(checkpoint, WanVAEConfig.from_dict(sidecar["config"]), dtype=torch.bfloat16)
    assert rel_err(vae.encode(t["input.image"]), t["out.encode_image_bf16"]) <= BF16_TOL


def test_released_widths():
    with torch.device("meta"):
        vae = WanVAE(WanVAEConfig())
    shapes = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    assert shapes["encoder.conv1.weight"] == (160, 12, 3, 3, 3)
    assert shapes["encoder.head.2.weight"] == (96, 640, 3, 3, 3)
    assert shapes["decoder.conv1.weight"] == (1024, 48, 3, 3, 3)
    assert shapes["decoder.upsamples.0.upsamples.3.time_conv.weight"] == (2048, 1024, 3, 1, 1)
    assert shapes["decoder.upsamples.2.upsamples.0.shortcut.weight"] == (512, 1024, 1, 1, 1)
    assert shapes["decoder.head.2.weight"] == (12, 256, 3, 3, 3)


def test_strict_load_names_bad_keys(fixture, tmp_path):
    sidecar, t = fixture
    params = {k.removeprefix("param."): v for k, v in t.items() if k.startswith("param.")}
    params["decoder.extra.weight"] = params.pop("decoder.conv1.bias")
    save_file(params, str(tmp_path / "bad.safetensors"))
    with pytest.raises(RuntimeError, match=r"decoder\.conv1\.bias.*|decoder\.extra\.weight"):
        load_wan_vae(tmp_path / "bad.safetensors", WanVAEConfig.from_dict(sidecar["config"]))
