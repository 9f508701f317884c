"""The T5Gemma text-encoder path end to end (spec 5.4) on a tiny RANDOM `T5GemmaEncoderModel` built from
transformers' own classes, with a byte-level BPE tokenizer trained in the test (tests/tiny_t5gemma.py): tokenise,
encode in bf16, fp16 round trip, pad/trim to 640, the negative prompt, and the DiT consuming the features."""
from dataclasses import replace

import pytest
import torch

from model.dit import DiTModel
from model.pipeline import PRESETS, TINY_DIT, MagiHumanPipeline, tiny_random_components
from model.shapes import LatentShape
from model.text_encoder import NEGATIVE_PROMPT, TARGET_LENGTH, T5GemmaTextEncoder
from tiny_t5gemma import write_tiny_t5gemma

WIDTH = 32
PROMPT = 'A woman speaks to the camera.\n\nDialogue:\n<Young woman, English>: "The report is ready."'


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return write_tiny_t5gemma(tmp_path_factory.mktemp("t5gemma"), width=WIDTH)


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    return T5GemmaTextEncoder(encoder_dir)


def test_features_are_the_bf16_encoder_output_through_fp16_padded_to_640(encoder, encoder_dir):
    from transformers import AutoTokenizer, T5GemmaEncoderModel

    embedding = encoder.encode(PROMPT)
    ids = AutoTokenizer.from_pretrained(str(encoder_dir))(PROMPT)["input_ids"]
    assert ids[0] == 2 and 3 not in ids                           # <bos> first, no unknown tokens
    assert embedding.features.shape == (1, TARGET_LENGTH, WIDTH) and embedding.features.dtype == torch.float32
    assert embedding.length == len(ids)
    assert encoder.model.dtype == torch.bfloat16                  # the original runs the encoder in bf16
    reference = T5GemmaEncoderModel.from_pretrained(str(encoder_dir), is_encoder_decoder=False,
                                                    dtype=torch.bfloat16).eval()
    with torch.no_grad():
        hidden = reference(input_ids=torch.tensor([ids])).last_hidden_state
    assert hidden.dtype == torch.bfloat16
    assert torch.equal(embedding.valid, hidden.half().float())
    assert embedding.features[:, embedding.length:].abs().max() == 0


def test_prompts_longer_than_640_tokens_are_encoded_whole_then_trimmed(encoder):
    """No truncation at tokenisation: the encoder (bidirectional) sees every token; its output is cut to 640."""
    long_prompt = " ".join([PROMPT] * 40)
    ids = encoder.tokenizer(long_prompt, return_tensors="pt")["input_ids"]
    assert ids.shape[1] > TARGET_LENGTH
    embedding = encoder.encode(long_prompt)
    assert embedding.length == TARGET_LENGTH and embedding.features.shape == (1, TARGET_LENGTH, WIDTH)
    with torch.no_grad():
        hidden = encoder.model(input_ids=ids).last_hidden_state
        truncated_input = encoder.model(input_ids=ids[:, :TARGET_LENGTH]).last_hidden_state
    assert torch.equal(embedding.features, hidden[:, :TARGET_LENGTH].half().float())
    assert not torch.equal(embedding.features, truncated_input.half().float())


def test_the_pipeline_encodes_the_negative_prompt_once_and_the_dit_consumes_both(encoder):
    """Base preset (CFG): prompt and the original's negative prompt through the real wrapper, then a tiny DiT of
    text width 32 denoises with them."""
    components = tiny_random_components(PRESETS["base"])
    dit = DiTModel(replace(TINY_DIT, text_in_channels=WIDTH)).eval()
    dit.init_weights_(torch.Generator().manual_seed(0))
    pipe = MagiHumanPipeline(replace(components, text_encoder=encoder, dit=dit), "base", device="cpu")
    text, negative = pipe.encode_text(PROMPT)
    assert negative is not None and pipe.encode_text("A man says hello.")[1] is negative
    negative_tokens = len(encoder.tokenizer(NEGATIVE_PROMPT)["input_ids"])
    assert negative.length == min(negative_tokens, TARGET_LENGTH)
    assert torch.equal(negative.features, encoder.encode(NEGATIVE_PROMPT).features)
    for embedding in (text, negative):
        assert embedding.features.shape == (1, TARGET_LENGTH, WIDTH) and embedding.features.dtype == torch.float32
    result = pipe.sample(text, negative, LatentShape.for_request(1, 64, 64), seed=0)
    assert result.video.shape == (1, 48, 7, 4, 4) and torch.isfinite(result.video).all()
    assert result.audio.shape == (1, 26, 64) and torch.isfinite(result.audio).all()


def test_a_missing_or_incomplete_encoder_directory_is_one_clear_error(encoder_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"T5Gemma text encoder directory \S*absent does not exist"):
        T5GemmaTextEncoder(tmp_path / "absent")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((encoder_dir / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"\S*partial lacks: tokenizer \(tokenizer.json or tokenizer.model\); "
                                                r"weights \("):
        T5GemmaTextEncoder(partial)
