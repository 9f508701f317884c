"""Turbo-VAED against the `turbo_vaed_tiny` parity fixture (README section 7)."""

import dataclasses

import pytest
import torch

from model.turbo_vaed import TurboVAED, TurboVAEDConfig, load_turbo_vaed
from parity_fixture import load_fixture, rel_err

FP32_TOL = 5e-5
BF16_TOL = 1e-1


@pytest.fixture(scope="module")
def fixture():
    return load_fixture("turbo_vaed_tiny")


def ema_checkpoint(tensors: dict) -> dict:
    """The fixture's parameters as the training checkpoint stores them: DDP-prefixed keys inside `ema_state_dict`."""
    return {"ema_state_dict": {"module." + k.removeprefix("param."): v
                               for k, v in tensors.items() if k.startswith("param.")}}


@pytest.fixture(scope="module")
def checkpoint(fixture, tmp_path_factory):
    _, tensors = fixture
    path = tmp_path_factory.mktemp("turbo") / "turbo_vaed.pt"
    torch.save(ema_checkpoint(tensors), path)
    return path


@pytest.fixture(scope="module")
def vaed(fixture, checkpoint):
    sidecar, _ = fixture
    return load_turbo_vaed(sidecar["config"], checkpoint)


def test_denormalize(vaed, fixture):
    _, t = fixture
    assert rel_err(vaed.denormalize(t["input.z"]), t["inter.z_denorm"]) <= FP32_TOL


@pytest.mark.parametrize("is_first_chunk", [True, False])
def test_single_decoder_call(vaed, fixture, is_first_chunk):
    sidecar, t = fixture
    name = "out.decoder_first_chunk" if is_first_chunk else "out.decoder_not_first_chunk"
    z = t["inter.z_denorm"][:, :, :sidecar["config"]["first_chunk_size"]]
    with torch.no_grad():
        assert rel_err(vaed.decoder(z, is_first_chunk), t[name]) <= FP32_TOL


def test_sliding_window_decode(vaed, fixture):
    _, t = fixture
    assert rel_err(vaed.decode(t["input.z"]), t["out.decode"]) <= FP32_TOL


def test_released_window_sizes(vaed, fixture):
    _, t = fixture
    released = TurboVAEDConfig()
    windows = dataclasses.replace(vaed.cfg, first_chunk_size=released.first_chunk_size, step_size=released.step_size)
    vaed_7_7 = TurboVAED(windows)
    vaed_7_7.load_state_dict(vaed.state_dict())
    assert rel_err(vaed_7_7.decode(t["input.z_7_7"]), t["out.decode_7_7"]) <= FP32_TOL


def test_decode_bf16(fixture, checkpoint):
    sidecar, t = fixture
    vaed = load_turbo_vaed(sidecar["config"], checkpoint, dtype=torch.bfloat16)
    video = vaed.decode(t["input.z"].bfloat16())
    assert video.dtype == torch.bfloat16
    assert rel_err(video.float(), t["out.decode_bf16"].float()) <= BF16_TOL


def test_spec_frame_count_example():
    """T = 26 with 7/7 windows pads to 28 latents, yields 25+28+28+28 frames and is cut to 1+4·25 = 101."""
    tiny = dataclasses.replace(TurboVAEDConfig(), decoder_block_out_channels=(2, 2, 2, 2))
    video = TurboVAED(tiny).eval().decode(torch.randn(1, 48, 26, 1, 1))
    assert video.shape == (1, 3, 101, 16, 16)


def test_loader_ignores_extras_and_reports_missing(fixture, tmp_path):
    sidecar, t = fixture
    checkpoint = ema_checkpoint(t)
    checkpoint["ema_state_dict"]["module.align_head.weight"] = torch.zeros(3)
    torch.save(checkpoint, tmp_path / "extra.pt")
    load_turbo_vaed(sidecar["config"], tmp_path / "extra.pt")

    del checkpoint["ema_state_dict"]["module.decoder.conv_out.conv.bias"]
    torch.save(checkpoint, tmp_path / "missing.pt")
    with pytest.raises(RuntimeError, match=r"decoder\.conv_out\.conv\.bias"):
        load_turbo_vaed(sidecar["config"], tmp_path / "missing.pt")


def test_released_structure():
    with torch.device("meta"):
        vaed = TurboVAED(TurboVAEDConfig())
    shapes = {k: tuple(v.shape) for k, v in vaed.state_dict().items()}
    assert shapes["decoder.conv_in.conv.weight"] == (512, 48, 3, 3, 3)
    assert len([k for k in shapes if k.startswith("decoder.mid_block.resnets.") and k.endswith("conv1.conv.weight")]) == 3
    assert not any(k.startswith("decoder.up_blocks.0.conv_in") for k in shapes)
    assert shapes["decoder.up_blocks.0.upsamplers.0.time_conv.conv.weight"] == (1024, 512, 3, 1, 1)
    assert shapes["decoder.up_blocks.1.conv_in.conv_shortcut.conv.weight"] == (256, 512, 1, 1, 1)
    assert "decoder.up_blocks.2.upsamplers.0.time_conv.conv.weight" not in shapes
    assert not any(k.startswith("decoder.up_blocks.3.upsamplers") for k in shapes)
    assert shapes["decoder.conv_out.conv.weight"] == (12, 64, 3, 3, 3)
