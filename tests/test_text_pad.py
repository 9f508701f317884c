"""Text-feature preparation (fp16 cast, zero pad/trim, fp32) against the `text_pad` fixture, and the encoders'
shared interface."""

import pytest
import torch

from model.text_encoder import (NEGATIVE_PROMPT, TARGET_LENGTH, TinyRandomTextEncoder, TinyTextEncoderConfig,
                                load_text_encoder, prepare_text_features)
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


def test_missing_weights_fall_back_to_the_labelled_random_encoder(tmp_path):
    encoder = load_text_encoder(tmp_path / "absent")
    assert encoder.is_random and "random" in encoder.name


def test_t5gemma_loads_from_a_local_directory(tmp_path):
    """A tiny randomly initialised T5Gemma saved to disk goes through the real loading and encoding path."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    sizes = dict(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=16)
    config = T5GemmaConfig(encoder=T5GemmaModuleConfig(**sizes), decoder=T5GemmaModuleConfig(**sizes),
                           vocab_size=16, is_encoder_decoder=False)
    torch.manual_seed(0)
    reference = T5GemmaEncoderModel(config).eval()
    reference.save_pretrained(tmp_path)
    words = ["<pad>", "<eos>", "<unk>", "a", "man", "speaks"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>",
                            unk_token="<unk>").save_pretrained(tmp_path)

    encoder = load_text_encoder(tmp_path, dtype=torch.float32)
    embedding = encoder.encode("a man speaks", target_length=8)
    assert not encoder.is_random
    assert embedding.features.shape == (1, 8, 32) and embedding.length == 3
    with torch.no_grad():
        hidden = reference(input_ids=torch.tensor([[3, 4, 5]])).last_hidden_state
    assert torch.equal(embedding.valid, hidden.half().float())
    assert embedding.features[:, 3:].abs().max() == 0
