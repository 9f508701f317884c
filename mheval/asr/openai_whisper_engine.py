"""The openai-whisper (PyTorch) engine: `.pt` checkpoints, openai-whisper model names, and a cross-check of the
default engine on the same offline base (converted once, see `ct2_convert.py`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import whisper
from whisper.decoding import DecodingTask, PyTorchInference
from whisper.model import ModelDimensions, Whisper
from whisper.tokenizer import get_tokenizer

from mheval.asr import ASR, ASRSettings
from mheval.asr.ct2_convert import base_checkpoint_path
from mheval.asr.weights import openai_model_url

N_SAMPLES, N_FRAMES, HOP_LENGTH = whisper.audio.N_SAMPLES, whisper.audio.N_FRAMES, whisper.audio.HOP_LENGTH


def load_checkpoint(path: Path, device: str) -> Whisper:
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    if "alignment_heads" in checkpoint:
        model.set_alignment_heads(checkpoint["alignment_heads"])
    return model.to(device)


def load_model(name: str, device: str) -> Whisper:
    if name == "base":
        return load_checkpoint(base_checkpoint_path(), device)
    if openai_model_url(name):
        return whisper.load_model(name, device=device)
    return load_checkpoint(Path(name), device)


class SharedAudioInference(PyTorchInference):
    """Beam search and best-of sampling decode n_group token rows against one audio. openai-whisper broadcasts
    that audio's cross-attention keys/values over the rows, which sends CPU attention down a path that copies them
    at every step (two thirds of the decode time with beam 5); repeating them once after the first step keeps
    the fast kernel. Same arithmetic, same transcripts."""

    def logits(self, tokens: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        first_step = not self.kv_cache
        logits = super().logits(tokens, audio_features)
        if first_step and tokens.shape[0] != audio_features.shape[0]:
            rows_per_audio = tokens.shape[0] // audio_features.shape[0]
            for block in self.model.decoder.blocks:
                for module in (block.cross_attn.key, block.cross_attn.value):
                    self.kv_cache[module] = self.kv_cache[module].repeat_interleave(rows_per_audio, dim=0)
        return logits


class SharedAudioDecodingTask(DecodingTask):
    def __init__(self, model: Whisper, options: whisper.DecodingOptions):
        super().__init__(model, options)
        self.inference = SharedAudioInference(model, len(self.initial_tokens))
        if hasattr(self.decoder, "inference"):  # beam search reorders the self-attention cache through it
            self.decoder.inference = self.inference


class OpenAIWhisperASR(ASR):
    def __init__(self, settings: ASRSettings):
        super().__init__(settings)
        s = self.settings
        self.model = load_model(s.model, s.device)
        self.model = self.model.half() if s.compute_type == "float16" else self.model.float()
        tokenizer = get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages)
        self.languages = frozenset(tokenizer.all_language_codes)

    def decode_windows(self, audio: np.ndarray, windows: list[tuple[int, int]], language: str) -> list[dict]:
        """As in `whisper.transcribe`, the log-mel of a window is computed with 30 s of zero audio after it and
        trimmed to the window, then padded in the log-mel domain (on our espeak German sentences this read better
        than audio zero-padded to 30 s: corpus WER 0.44 vs 0.50)."""
        results = []
        for start, end in windows:
            mel = whisper.log_mel_spectrogram(audio[start:end], self.model.dims.n_mels, N_SAMPLES, self.model.device)
            cap = self.decoding.sample_len((end - start) / whisper.audio.SAMPLE_RATE)
            results.append(self.decode_window(mel[:, : (end - start) // HOP_LENGTH], language, cap))
        return results

    @torch.inference_mode()
    def decode_window(self, mel: torch.Tensor, language: str, cap: int) -> dict:
        """Temperature fallback over one window (mel: n_mels × ≤3000 frames), keeping the best attempt, not the last.

        openai-whisper's own loop returns the final, hottest sample when every attempt fails the thresholds, which
        on unclear speech is the worst of them; and it re-runs the encoder for every attempt. Here the audio
        features are computed once, an attempt is accepted when it passes both thresholds, and otherwise the
        attempt with the best mean log-probability among those that are not repetitive wins."""
        d = self.decoding
        fp16 = self.settings.compute_type == "float16"
        segment = whisper.pad_or_trim(mel, N_FRAMES)[None].to(torch.float16 if fp16 else torch.float32)
        features = self.model.embed_audio(segment)  # (1, n_audio_ctx, n_audio_state)
        attempts = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(d.seed)
            for temperature in d.temperatures:
                options = whisper.DecodingOptions(
                    task="transcribe", language=language, temperature=temperature, sample_len=cap,
                    beam_size=d.beam_size if temperature == 0 and d.beam_size > 1 else None,
                    best_of=d.best_of if temperature > 0 else None, without_timestamps=True, fp16=fp16,
                )
                attempts.append(SharedAudioDecodingTask(self.model, options).run(features)[0])
                if self.acceptable(attempts[-1]):
                    break
        not_looping = [a for a in attempts if a.compression_ratio <= d.compression_ratio_threshold] or attempts
        best = max(not_looping, key=lambda a: a.avg_logprob)
        return self.window_result(best.text, len(best.tokens), cap, best.avg_logprob, best.compression_ratio,
                                  best.no_speech_prob, len(attempts))

    def acceptable(self, attempt: whisper.DecodingResult) -> bool:
        d = self.decoding
        confident = not d.fallback_on_low_logprob or attempt.avg_logprob >= d.logprob_threshold
        return attempt.compression_ratio <= d.compression_ratio_threshold and confident
