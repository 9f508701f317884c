"""A tiny RANDOM T5Gemma encoder directory, built from transformers' own classes, for tests (no hub access).

The tokenizer is a byte-level BPE trained here with the `tokenizers` library on a few sentences and the negative
prompt, so any text tokenises without unknown tokens; like Gemma's it puts `<bos>` first. The model is
`T5GemmaEncoderModel` with a 2-layer encoder of width `width`, saved with `save_pretrained` (safetensors).
"""
from pathlib import Path

import torch

from model.text_encoder import NEGATIVE_PROMPT

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]   # Gemma's ids 0, 1, 2, 3
CORPUS = [NEGATIVE_PROMPT, "A man says hello.", "A woman speaks to the camera in a quiet office.",
          'Dialogue:\n<Young woman, English>: "The report is ready."\n\nBackground Sound:\n<Rain>']


def write_tiny_t5gemma(directory: Path, width: int = 32, vocab_size: int = 400, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[
        ("<bos>", tokenizer.token_to_id("<bos>"))])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                            unk_token="<unk>").save_pretrained(directory)

    sizes = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    config = T5GemmaConfig(encoder=T5GemmaModuleConfig(**sizes), decoder=T5GemmaModuleConfig(**sizes),
                           vocab_size=vocab_size, is_encoder_decoder=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        T5GemmaEncoderModel(config).save_pretrained(directory)
    return Path(directory)
