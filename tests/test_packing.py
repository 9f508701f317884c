"""Sequence packing, coordinates, modality mapping, local ranges and unpacking: exact vs the original's data proxy."""
import pytest
import torch

from dit_fixture_utils import DIT_FIXTURES, load_fixture, pack_fixture_inputs
from model.packing import inject_reference_image, pack, patchify_video, text_coords, unpack

PACKED_FIELDS = ("x", "coords_mapping", "modality_mapping", "local_q_ranges", "local_k_ranges")


@pytest.mark.parametrize("name", DIT_FIXTURES)
def test_packing_is_exact(name):
    sidecar, tensors = load_fixture(name)
    packed = pack_fixture_inputs(tensors, sidecar)
    for field in PACKED_FIELDS:
        mine, ref = getattr(packed, field), tensors[f"packed.{field}"]
        assert mine.dtype == ref.dtype and torch.equal(mine, ref), field
    derived = sidecar["derived"]
    assert (packed.num_video, packed.num_audio, packed.num_text, len(packed.x)) == (
        derived["Nv"], derived["Na"], derived["Nt"], derived["L"])


@pytest.mark.parametrize("name", DIT_FIXTURES)
def test_unpacking_is_exact(name):
    sidecar, tensors = load_fixture(name)
    packed = pack_fixture_inputs(tensors, sidecar)
    variants = [p.split(".")[0] for p in tensors if p.endswith(".video_velocity")]
    assert variants
    for variant in variants:
        video, audio = unpack(tensors[f"{variant}.velocity_packed"], packed)
        assert torch.equal(video, tensors[f"{variant}.video_velocity"]), variant
        assert torch.equal(audio, tensors[f"{variant}.audio_velocity"]), variant


def test_v1_coordinates_are_exact():
    sidecar, tensors = load_fixture("dit_tiny")
    packed = pack_fixture_inputs(tensors, sidecar, coords_style="v1")
    assert torch.equal(packed.coords_mapping, tensors["packed_v1.coords_mapping"])
    v2 = pack_fixture_inputs(tensors, sidecar, coords_style="v2")
    video_rows = packed.modality_mapping == 0
    assert torch.equal(packed.coords_mapping[video_rows], v2.coords_mapping[video_rows])


def test_video_feature_order_asymmetry():
    """Input features are channel-major (c*4 + py*2 + px); output features channel-innermost ((py*2+px)*C + c)."""
    channels, frames, height, width = 3, 2, 4, 6
    c, t, y, x = torch.meshgrid(*(torch.arange(n) for n in (channels, frames, height, width)), indexing="ij")
    latent = (1000 * c + 100 * t + 10 * y + x).float()[None]
    tokens = patchify_video(latent)
    token = (1 * (height // 2) + 1) * (width // 2) + 2  # t=1, patch row 1, patch column 2
    for ci in range(channels):
        for py in (0, 1):
            for px in (0, 1):
                expected = 1000 * ci + 100 * 1 + 10 * (2 + py) + (4 + px)
                assert tokens[token, ci * 4 + py * 2 + px] == expected
    packed = pack(latent, torch.zeros(1, 5, 4), torch.zeros(1, 3, 8), 2)
    velocity = torch.zeros(len(packed.x), 4 * channels)
    velocity[:len(tokens)] = tokens.reshape(len(tokens), channels, 4).transpose(1, 2).reshape(len(tokens), -1)
    video, _ = unpack(velocity, packed)
    assert torch.equal(video, latent)


def test_text_padding_is_never_packed():
    sidecar, tensors = load_fixture("dit_tiny")
    text = tensors["input.text_embeds_padded"].clone()
    length = int(tensors["input.text_len"])
    text[:, length:] = 123.0
    packed = pack(tensors["input.latent_video"], tensors["input.latent_audio"], text, length)
    assert torch.equal(packed.x, tensors["packed.x"])


def test_text_coords_edge_cases():
    assert text_coords(1, "v2")[0, 0] == -1  # Nt = 1: scale 1, position -1
    assert torch.equal(text_coords(3, "v1")[:, 0], torch.tensor([0.0, 1.0, 2.0]))


def test_inject_reference_image_overwrites_frame_zero_only():
    latent = torch.randn(1, 4, 3, 2, 2)
    image = torch.randn(1, 4, 1, 2, 2)
    out = inject_reference_image(latent, image)
    assert torch.equal(out[:, :, :1], image) and torch.equal(out[:, :, 1:], latent[:, :, 1:])
    assert not torch.equal(latent[:, :, :1], image)  # input untouched


def test_unknown_coords_style_rejected():
    with pytest.raises(ValueError):
        pack(torch.zeros(1, 2, 1, 2, 2), torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), 1, coords_style="v3")
