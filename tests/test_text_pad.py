"""Text-feature preparation (fp16 cast, zero pad/trim, fp32) against the `text_pad` fixture, and the encoders'
shared interface."""

import pytest
import torch

from model.text_encoder import (NEGATIVE_PROMPT, TARGET_LENGTH, TinyRandomTextEncoder, TinyTextEncoderConfig,
                                prepare_text_features)
from parity_fixture import load_fixture

SIDECAR, REF = load_fixture("text_pad")


@pytest.mark.parametrize("case", SIDECAR["cases"], ids=lambda case: case["name"])
def test_padding_is_bitwise_exact(case):
    name = case["name"]
    embedding = prepare_text_features(REF[f"{name}.encoder_output_bf16"], case["target_length"])
    assert embedding.features.dtype == torch.float32
    assert torch.equal(embedding.features.view(torch.int32), REF[f"{name}.padded"].view(torch.int32))
    assert embedding.length == REF[f"{name}.original_len"].item() == case["returned_len"]
    assert embedding.valid.shape[1] == embedding.length


def test_default_target_is_the_pipelines():
    assert TARGET_LENGTH == SIDECAR["real_pipeline_values"]["target_length"]


def test_tiny_encoder_is_deterministic_and_padded():
    config = TinyTextEncoderConfig(width=32, num_layers=1, seed=7)
    first = TinyRandomTextEncoder(config).encode("a man speaks")
    second = TinyRandomTextEncoder(config).encode("a man speaks")
    other_seed = TinyRandomTextEncoder(TinyTextEncoderConfig(width=32, num_layers=1, seed=8)).encode("a man speaks")
    assert first.features.shape == (1, TARGET_LENGTH, 32)
    assert first.length == len("a man speaks") + 1   # bytes + end token
    assert torch.equal(first.features, second.features)
    assert not torch.equal(first.features, other_seed.features)
    assert first.features[:, first.length:].abs().max() == 0


def test_tiny_encoder_trims_long_prompts():
    encoder = TinyRandomTextEncoder(TinyTextEncoderConfig(width=16, num_layers=1))
    embedding = encoder.encode(NEGATIVE_PROMPT)
    assert embedding.length == TARGET_LENGTH < len(NEGATIVE_PROMPT)
    assert torch.isfinite(embedding.features).all()
