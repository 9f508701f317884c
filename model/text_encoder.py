"""Text conditioning of the daVinci-MagiHuman generator (spec section 5.4, Appendix A).

The prompt is encoded by the T5Gemma encoder (last hidden state, width 3584). The features are cast to fp16,
zero-padded or trimmed to 640 rows and cast to fp32; only the first `length` rows ever become DiT tokens.

Two encoders share one interface, `encode(prompt) -> TextEmbedding`:
* `T5GemmaTextEncoder`: the real encoder through `transformers`, from a local directory;
* `TinyRandomTextEncoder`: a randomly initialised stand-in, NOT a language model, so the tiny stack runs end to
  end without weights. Its features carry no meaning.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

TARGET_LENGTH = 640   # t5_gemma_target_length
T5GEMMA_WIDTH = 3584

# `context_null`: the negative prompt of the second CFG branch, exactly as in the original.
NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards, low quality, worst quality, poor "
    "quality, noise, background noise, hiss, hum, buzz, crackle, static, compression artifacts, MP3 artifacts, "
    "digital clipping, distortion, muffled, muddy, unclear, echo, reverb, room echo, over-reverberated, hollow "
    "sound, distant, washed out, harsh, shrill, piercing, grating, tinny, thin sound, boomy, bass-heavy, flat EQ, "
    "over-compressed, abrupt cut, jarring transition, sudden silence, looping artifact, music, instrumental, "
    "sirens, alarms, crowd noise, unrelated sound effects, chaotic, disorganized, messy, cheap sound, emotionless, "
    "flat delivery, deadpan, lifeless, apathetic, robotic, mechanical, monotone, flat intonation, undynamic, "
    "boring, reading from a script, AI voice, synthetic, text-to-speech, TTS, insincere, fake emotion, "
    "exaggerated, overly dramatic, melodramatic, cheesy, cringey, hesitant, unconfident, tired, weak voice, "
    "stuttering, stammering, mumbling, slurred speech, mispronounced, bad articulation, lisp, vocal fry, creaky "
    "voice, mouth clicks, lip smacks, wet mouth sounds, heavy breathing, audible inhales, plosives, p-pops, "
    "coughing, clearing throat, sneezing, speaking too fast, rushed, speaking too slow, dragged out, unnatural "
    "pauses, awkward silence, choppy, disjointed, multiple speakers, two voices, background talking, out of tune, "
    "off-key, autotune artifacts"
)


@dataclass
class TextEmbedding:
    """Encoder features padded/trimmed to a fixed length; rows at and beyond `length` are never used."""

    features: torch.Tensor   # [1, target_length, width] float32
    length: int              # min(number of tokens, target_length)

    @property
    def valid(self) -> torch.Tensor:
        """The rows that become DiT tokens: [1, length, width]."""
        return self.features[:, :self.length]


def prepare_text_features(hidden_states: torch.Tensor, target_length: int = TARGET_LENGTH) -> TextEmbedding:
    """Encoder output [1, n, D] → fp16 → zero-pad or trim to target_length → fp32.

    The fp16 round trip is part of the original: values beyond ±65504 become ±inf, tiny ones flush to
    subnormals or 0.
    """
    features = hidden_states.half()
    num_tokens = features.shape[1]
    if num_tokens >= target_length:
        features = features[:, :target_length]
    else:
        features = F.pad(features, (0, 0, 0, target_length - num_tokens))
    return TextEmbedding(features.float(), min(num_tokens, target_length))


# What a transformers checkpoint directory of the encoder must hold: (what, any of these file patterns)
T5GEMMA_FILES = (("config", ("config.json",)), ("tokenizer", ("tokenizer.json", "tokenizer.model")),
                 ("weights", ("*.safetensors", "*.safetensors.index.json", "*.bin")))


def check_t5gemma_directory(path: Path) -> None:
    """One FileNotFoundError naming the directory and everything it lacks (before transformers' own errors)."""
    if not path.is_dir():
        raise FileNotFoundError(f"T5Gemma text encoder directory {path} does not exist; expected a local transformers "
                                "directory of google/t5gemma-9b-9b-ul2 (config.json, tokenizer, weights)")
    missing = [f"{what} ({' or '.join(patterns)})" for what, patterns in T5GEMMA_FILES
               if not any(next(path.glob(pattern), None) for pattern in patterns)]
    if missing:
        raise FileNotFoundError(f"T5Gemma text encoder directory {path} lacks: {'; '.join(missing)}")


class T5GemmaTextEncoder:
    """`google/t5gemma-9b-9b-ul2` encoder from a local directory (tokenizer and weights, no hub access), loaded as
    the original loads it: `T5GemmaEncoderModel.from_pretrained(path, is_encoder_decoder=False, dtype=bf16)` and
    the directory's own tokenizer."""

    is_random = False
    name = "t5gemma"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16):
        from transformers import AutoTokenizer, T5GemmaEncoderModel

        check_t5gemma_directory(Path(path))
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = T5GemmaEncoderModel.from_pretrained(str(path), is_encoder_decoder=False, dtype=dtype,
                                                         local_files_only=True)
        self.model.to(self.device).eval()

    @torch.no_grad()
    def encode(self, prompt: str, target_length: int = TARGET_LENGTH) -> TextEmbedding:
        # No padding, no truncation: the whole prompt is encoded, then trimmed to target_length.
        tokens = self.tokenizer([prompt], return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return prepare_text_features(hidden, target_length)


@dataclass
class TinyTextEncoderConfig:
    width: int = 64        # output width; must equal the DiT's text input width
    num_layers: int = 2
    num_heads: int = 4
    seed: int = 0


class TinyRandomTextEncoder(nn.Module):
    """RANDOM, UNTRAINED stand-in for T5Gemma with the same interface. Not a language model.

    Tokens are the UTF-8 bytes of the prompt followed by an end token. The weights are PyTorch's default
    initialisation drawn from `config.seed`, so the same seed always gives the same features.
    """

    is_random = True
    name = "tiny-random-text-encoder"
    END_TOKEN = 256

    def __init__(self, config: TinyTextEncoderConfig = TinyTextEncoderConfig()):
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.embed = nn.Embedding(self.END_TOKEN + 1, config.width)
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(config.width, config.num_heads, 4 * config.width, dropout=0.0,
                                           batch_first=True, norm_first=True)
                for _ in range(config.num_layers))
            self.norm = nn.LayerNorm(config.width)
        self.eval()

    def tokenize(self, prompt: str) -> torch.Tensor:
        """[1, n] int64: UTF-8 bytes, then END_TOKEN."""
        ids = list(prompt.encode("utf-8")) + [self.END_TOKEN]
        return torch.tensor([ids], dtype=torch.int64, device=self.embed.weight.device)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(token_ids)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.norm(hidden)   # [1, n, width], the "last hidden state"

    @torch.no_grad()
    def encode(self, prompt: str, target_length: int = TARGET_LENGTH) -> TextEmbedding:
        return prepare_text_features(self(self.tokenize(prompt)), target_length)


TextEncoder = T5GemmaTextEncoder | TinyRandomTextEncoder
