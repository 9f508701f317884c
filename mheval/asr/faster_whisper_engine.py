"""The default ASR engine: faster-whisper (CTranslate2), sequential on the CPU, batched on CUDA."""
from __future__ import annotations

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel

from mheval.asr import SAMPLE_RATE, ASR, ASRSettings
from mheval.asr.weights import base_folder, hub_weights_for
from mheval.weights import resolve


class FasterWhisperASR(ASR):
    def __init__(self, settings: ASRSettings):
        super().__init__(settings)
        s = self.settings
        hub = hub_weights_for(s.model, s.engine)
        folder = str(base_folder() if s.model == "base" else resolve(hub) if hub else s.model)
        # cpu_threads=0 leaves CTranslate2's default (OMP_NUM_THREADS, else 4), as plain faster-whisper does.
        self.model = WhisperModel(folder, device=s.device, compute_type=s.compute_type)
        tokenizer = self.model.hf_tokenizer
        # faster-whisper lists every code it knows (yue too) for any multilingual model; keep the model's own
        self.languages = frozenset(code for code in self.model.supported_languages
                                   if tokenizer.token_to_id(f"<|{code}|>") is not None)
        self.pipeline = BatchedInferencePipeline(self.model) if s.batch_size > 1 else None

    def decode_options(self, cap: int) -> dict:
        """faster-whisper's transcribe arguments for one window under mheval's policy. Without the low-log-
        probability fallback, faster-whisper is given no log-probability or no-speech threshold (either would make
        it re-decode or drop windows itself); the silence rule is applied to the chosen decode in `window_result`.
        With it, faster-whisper applies Whisper's own rules, which are the same."""
        d = self.decoding
        whisper_rules = d.fallback_on_low_logprob
        return dict(
            task="transcribe", beam_size=d.beam_size, best_of=d.best_of, temperature=list(d.temperatures),
            compression_ratio_threshold=d.compression_ratio_threshold,
            log_prob_threshold=d.logprob_threshold if whisper_rules else None,
            no_speech_threshold=d.no_speech_threshold if whisper_rules else None,
            condition_on_previous_text=False, without_timestamps=True, max_new_tokens=cap, vad_filter=False,
        )

    def decode_windows(self, audio: np.ndarray, windows: list[tuple[int, int]], language: str) -> list[dict]:
        ctranslate2.set_random_seed(self.decoding.seed)  # the fallback temperatures sample
        caps = [self.decoding.sample_len((end - start) / SAMPLE_RATE) for start, end in windows]
        if self.pipeline is None:
            return [self.decode_one(audio[start:end], language, cap) for (start, end), cap in zip(windows, caps)]
        return self.decode_batched(audio, windows, caps, language)

    def decode_one(self, window: np.ndarray, language: str, cap: int) -> dict:
        """One window (≤ 30 s) with temperature fallback; faster-whisper keeps the best non-repetitive attempt."""
        segments, _ = self.model.transcribe(window, language=language, **self.decode_options(cap))
        segments = list(segments)  # without timestamps: one segment per window, none when the text is blank
        if not segments:
            return self.window_result("", 0, cap, None, None, None, None)
        best = segments[0]
        # faster-whisper reports the last temperature tried (the pick's own when it passed, else the last one)
        attempts = self.decoding.temperatures.index(best.temperature) + 1
        return self.window_result(best.text, len(best.tokens), cap, best.avg_logprob, best.compression_ratio,
                                  best.no_speech_prob, attempts)

    def decode_batched(self, audio: np.ndarray, windows: list[tuple[int, int]], caps: list[int],
                       language: str) -> list[dict]:
        """All windows in batches at temperature 0 (faster-whisper's batched pipeline has no fallback); a window
        that comes back repetitive (or unconfident, with the low-log-probability fallback) is decoded again on its
        own with the fallback, so the policy is the sequential one."""
        d = self.decoding
        segments, _ = self.pipeline.transcribe(
            audio, language=language, batch_size=self.settings.batch_size,
            clip_timestamps=[{"start": start / SAMPLE_RATE, "end": end / SAMPLE_RATE} for start, end in windows],
            **{**self.decode_options(max(caps)), "temperature": d.temperatures[0]})
        segments = list(segments)  # without timestamps: exactly one segment per window, in order
        if len(segments) != len(windows):
            raise RuntimeError(f"batched decode returned {len(segments)} segments for {len(windows)} windows")
        results = []
        for segment, (start, end), cap in zip(segments, windows, caps):
            repetitive = segment.compression_ratio > d.compression_ratio_threshold
            unconfident = d.fallback_on_low_logprob and segment.avg_logprob < d.logprob_threshold and not (
                segment.no_speech_prob > d.no_speech_threshold)
            if repetitive or unconfident:
                results.append(self.decode_one(audio[start:end], language, cap))
            else:
                results.append(self.window_result(segment.text, len(segment.tokens), cap, segment.avg_logprob,
                                                  segment.compression_ratio, segment.no_speech_prob, 1))
        return results
