"""`puppet`: the embedded reference generator, a known-good anchor for every metric.

It speaks the item's dialogue with espeak-ng in the item's language and draws a procedural face whose mouth opening
follows the speech envelope, frame by frame, at the item's resolution and 25 fps. Lips are in sync by construction,
so the sync metric must read ~0 ms on it; `shift_ms` moves the audio against the video to validate that metric
(positive: the audio comes later than the mouth).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mheval.adapters import Adapter, GenerationError, register
from mheval.languages import language
from mheval.media import write_mp4
from mheval.suites import SuiteItem

FPS = 25
VERSION = 2  # bump when the clips it makes change (2: Japanese spoken from its kana reading)
PAUSE_SECONDS = 0.35  # between dialogue lines, and before the first one so onsets are not at frame 0


@dataclass(frozen=True)
class PuppetOptions:
    shift_ms: float = field(default=0.0, metadata={"help": "delay the audio against the video (negative: advance)"})
    voice: str = field(default="", metadata={"help": "espeak-ng voice; empty: the item language's voice"})


@register
class PuppetAdapter(Adapter):
    name = "puppet"
    description = "espeak-ng speech + procedural face, lips driven by the speech envelope"
    options_class = PuppetOptions

    def config(self) -> dict[str, Any]:
        return {**super().config(), "version": VERSION, "espeak": espeak_version(), "shift_ms": self.shift_ms}

    @property
    def shift_ms(self) -> float:
        return self.options.shift_ms

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        started = time.perf_counter()
        voice = self.options.voice or language(item.language).espeak_voice
        speech, sample_rate = speak([speakable(line.text, item.language) for line in item.dialogue], voice)
        spoken = time.perf_counter()
        seconds = max(item.seconds, len(speech) / sample_rate + PAUSE_SECONDS)
        frame_count = int(round(seconds * FPS))
        audio = fit_length(speech, int(round(seconds * sample_rate)))
        openness = mouth_openness(audio, sample_rate, frame_count)
        audio = shift_audio(audio, sample_rate, self.shift_ms)
        frames = render_face(openness, item.width, item.height, seed)
        rendered = time.perf_counter()
        write_mp4(output, frames, FPS, audio, sample_rate)
        return {
            "timings": {
                "speech": spoken - started,
                "render": rendered - spoken,
                "encode": time.perf_counter() - rendered,
            },
            "voice": voice,
            "shift_ms": self.shift_ms,
        }


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
            pieces += [np.zeros(int(PAUSE_SECONDS * sample_rate), np.float32), samples]
    return np.concatenate(pieces), sample_rate


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
