"""DiT forward vs tensors computed with the original implementation (fixtures dit_tiny, dit_tiny_local_attn)."""
import pytest
import torch

from dit_fixture_utils import DIT_FIXTURES, build_fixture_model, load_fixture, pack_fixture_inputs, rel_err
from model.dit import ModalityGroups, attention
from model.packing import local_attention_ranges

FP32_TOL, BF16_TOL = 1e-5, 2e-2


def run_with_intermediates(model, packed):
    """Velocity plus adapter output and per-layer residual streams, in packed token order."""
    captured = {}
    groups = ModalityGroups(packed.modality_mapping)
    hooks = [model.adapter.register_forward_hook(lambda m, i, out: captured.__setitem__("adapter_hidden", out))]
    for index, layer in enumerate(model.block.layers):
        hooks.append(layer.register_forward_hook(lambda m, i, out, k=index: captured.__setitem__(f"layer{k}_out", out)))
    with torch.no_grad():
        velocity = model(*packed.model_inputs())
    for hook in hooks:
        hook.remove()
    return velocity, {name: groups.ungroup(h) for name, h in captured.items()}


@pytest.mark.parametrize("name", DIT_FIXTURES)
def test_fp32_forward_matches_original(name, tmp_path):
    sidecar, tensors = load_fixture(name)
    model = build_fixture_model(name, tmp_path)
    packed = pack_fixture_inputs(tensors, sidecar)
    velocity, inter = run_with_intermediates(model, packed)
    assert rel_err(model.adapter.rope(packed.coords_mapping), tensors["inter_fp32.rope"]) <= FP32_TOL
    for key, value in inter.items():
        assert rel_err(value, tensors[f"inter_fp32.{key}"]) <= FP32_TOL, key
    assert rel_err(velocity, tensors["out_fp32.velocity_packed"]) <= FP32_TOL
    text_rows = packed.modality_mapping == 2
    assert velocity.shape == tensors["out_fp32.velocity_packed"].shape
    assert (velocity[text_rows] == 0).all()


@pytest.mark.parametrize("name", DIT_FIXTURES)
def test_bf16_forward_matches_original(name, tmp_path):
    sidecar, tensors = load_fixture(name)
    model = build_fixture_model(name, tmp_path, compute_dtype=torch.bfloat16)
    velocity, inter = run_with_intermediates(model, pack_fixture_inputs(tensors, sidecar))
    for key, value in inter.items():
        assert rel_err(value, tensors[f"inter_bf16.{key}"]) <= BF16_TOL, key
    assert rel_err(velocity, tensors["out_bf16.velocity_packed"]) <= BF16_TOL


def v1_variant_fixtures():
    return [name for name in DIT_FIXTURES if "packed_v1.coords_mapping" in load_fixture(name)[1]]


@pytest.mark.parametrize("name", v1_variant_fixtures())
def test_v1_coords_forward_matches_original(name, tmp_path):
    sidecar, tensors = load_fixture(name)
    packed = pack_fixture_inputs(tensors, sidecar, coords_style="v1")
    assert torch.equal(packed.coords_mapping, tensors["packed_v1.coords_mapping"])
    with torch.no_grad():
        velocity = build_fixture_model(name, tmp_path / "fp32")(*packed.model_inputs())
        velocity_bf16 = build_fixture_model(name, tmp_path / "bf16", torch.bfloat16)(*packed.model_inputs())
    assert rel_err(velocity, tensors["out_v1_fp32.velocity_packed"]) <= FP32_TOL
    assert rel_err(velocity_bf16, tensors["out_v1_bf16.velocity_packed"]) <= BF16_TOL


def test_local_attention_layers_require_ranges(tmp_path):
    name = next(n for n in DIT_FIXTURES if load_fixture(n)[0]["model_config"]["local_attn_layers"])
    sidecar, tensors = load_fixture(name)
    packed = pack_fixture_inputs(tensors, sidecar)
    with pytest.raises(ValueError, match="local"):
        build_fixture_model(name, tmp_path)(packed.x, packed.coords_mapping, packed.modality_mapping)


def test_shuffled_token_order_gives_permuted_velocity(tmp_path):
    """Modality grouping is internal: any token order gives the same per-token velocity (full attention)."""
    sidecar, tensors = load_fixture("dit_tiny")
    packed = pack_fixture_inputs(tensors, sidecar)
    model = build_fixture_model("dit_tiny", tmp_path)
    perm = torch.randperm(len(packed.x), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        shuffled = model(packed.x[perm], packed.coords_mapping[perm], packed.modality_mapping[perm])
    assert rel_err(shuffled, tensors["out_fp32.velocity_packed"][perm]) <= FP32_TOL


def union_mask(q_ranges, k_ranges, length):
    mask = torch.zeros(length, length, dtype=torch.bool)
    for (q0, q1), (k0, k1) in zip(q_ranges.tolist(), k_ranges.tolist()):
        mask[q0:q1, k0:k1] = True
    return mask


@pytest.mark.parametrize("receptive_field", [0, 1, 2, 11])
def test_range_attention_equals_masked_softmax_over_the_union(receptive_field):
    g = torch.Generator().manual_seed(receptive_field)
    num_frames, per_frame, num_other = 5, 6, 9
    num_video = num_frames * per_frame
    length = num_video + num_other
    q_ranges, k_ranges = local_attention_ranges(num_video, num_frames, length, receptive_field)
    q = torch.randn(length, 4, 16, generator=g)
    k, v = torch.randn(length, 2, 16, generator=g), torch.randn(length, 2, 16, generator=g)
    mine = attention(q, k, v, q_ranges, k_ranges)
    mask = union_mask(q_ranges, k_ranges, length)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.repeat_interleave(2, 1).transpose(0, 1), v.repeat_interleave(2, 1).transpose(0, 1),
        attn_mask=mask).transpose(0, 1)
    assert rel_err(mine, ref) <= 1e-6
    if receptive_field < num_frames - 1:
        assert rel_err(mine, attention(q, k, v)) > 1e-3  # the window really restricts the keys


def test_ranges_must_cover_every_query():
    q = torch.randn(10, 2, 8)
    with pytest.raises(ValueError, match="without keys"):
        attention(q, q, q, torch.tensor([[0, 6]]), torch.tensor([[0, 10]]))
