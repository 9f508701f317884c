"""Checkpoint loading: single file, shards + index, .zst, and clear errors."""
import json

import pytest
import torch

from dit_fixture_utils import load_fixture, pack_fixture_inputs, rel_err, weight_tensors
from model.checkpoint import (
    INDEX_FILE, CheckpointError, fixture_state_dict, load_checkpoint, load_dit, save_checkpoint,
)
from model.dit import DiTConfig, DiTModel


def tiny_config():
    return DiTConfig.from_dict(load_fixture("dit_tiny")[0]["model_config"])


@pytest.fixture(scope="module")
def reference_state():
    return fixture_state_dict(weight_tensors("dit_tiny"))


def assert_matches(model, state):
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name]), name


@pytest.mark.parametrize("num_shards,compress", [(1, False), (1, True), (4, False), (4, True)])
def test_layouts_load_identically(reference_state, tmp_path, num_shards, compress):
    save_checkpoint(reference_state, tmp_path, num_shards=num_shards, compress=compress)
    names = sorted(p.name for p in tmp_path.iterdir())
    if num_shards > 1:
        assert INDEX_FILE in names and "model-00004-of-00004.safetensors" + (".zst" if compress else "") in names
    assert all(n.endswith(".zst") for n in names if n != INDEX_FILE) == compress
    model = DiTModel(tiny_config())
    report = load_checkpoint(model, tmp_path)
    assert not report.missing and not report.unexpected and len(report.loaded) == len(reference_state)
    assert_matches(model, reference_state)


def test_dtypes_follow_the_module(reference_state, tmp_path):
    save_checkpoint({k: v.float() for k, v in reference_state.items()}, tmp_path)
    model = DiTModel(tiny_config())
    load_checkpoint(model, tmp_path)
    assert_matches(model, reference_state)  # bf16 values survive the fp32 round trip exactly


def test_meta_model_is_materialised(reference_state, tmp_path):
    save_checkpoint(reference_state, tmp_path)
    with torch.device("meta"):
        model = DiTModel(tiny_config())
    load_checkpoint(model, tmp_path)
    assert_matches(model, reference_state)


def test_shape_mismatch_names_the_key(reference_state, tmp_path):
    key = "block.layers.2.mlp.down_proj.weight"
    save_checkpoint({**reference_state, key: reference_state[key][:, :-1]}, tmp_path)
    with pytest.raises(CheckpointError, match=f"shape mismatch for '{key}'"):
        load_checkpoint(DiTModel(tiny_config()), tmp_path)


def test_missing_and_unexpected_keys_are_reported(reference_state, tmp_path):
    missing_key, extra_key = "block.layers.3.attention.q_norm.weight", "block.layers.99.mlp.bogus"
    state = {k: v for k, v in reference_state.items() if k != missing_key}
    save_checkpoint({**state, extra_key: torch.zeros(2)}, tmp_path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(DiTModel(tiny_config()), tmp_path)
    assert missing_key in str(error.value) and extra_key in str(error.value)
    report = load_checkpoint(DiTModel(tiny_config()), tmp_path, strict=False)
    assert report.missing == [missing_key] and report.unexpected == [extra_key]


def test_missing_buffer_is_not_an_error(reference_state, tmp_path):
    save_checkpoint({k: v for k, v in reference_state.items() if k != "adapter.rope.bands"}, tmp_path)
    model = DiTModel(tiny_config())
    report = load_checkpoint(model, tmp_path)
    assert report.missing == ["adapter.rope.bands"]
    assert torch.allclose(model.adapter.rope.bands, reference_state["adapter.rope.bands"], rtol=1e-6, atol=0)


def test_index_naming_an_absent_tensor_fails(reference_state, tmp_path):
    save_checkpoint(reference_state, tmp_path, num_shards=2)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["weight_map"]["adapter.ghost"] = "model-00001-of-00002.safetensors"
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="adapter.ghost"):
        load_checkpoint(DiTModel(tiny_config()), tmp_path)


def test_empty_directory_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_checkpoint(DiTModel(tiny_config()), tmp_path)


@pytest.mark.parametrize("drop_bands", [False, True])
def test_load_dit_materialises_a_meta_model(reference_state, tmp_path, drop_bands):
    state = {k: v for k, v in reference_state.items() if not (drop_bands and k == "adapter.rope.bands")}
    save_checkpoint(state, tmp_path, num_shards=3, compress=True)
    model = load_dit(tmp_path, tiny_config())
    assert not model.training and not any(t.is_meta for t in model.state_dict().values())
    sidecar, tensors = load_fixture("dit_tiny")
    with torch.no_grad():
        velocity = model(*pack_fixture_inputs(tensors, sidecar).model_inputs())
    assert rel_err(velocity, tensors["out_fp32.velocity_packed"]) <= 1e-5
