"""Audio-conditioned generation (a2v, spec 4.7) with the tiny random stack: the reference speech is loaded at
51.2 kHz, cut to the clip length, encoded, held as clean audio tokens, and becomes the clip's audio track."""
import subprocess

import numpy as np
import pytest
import scipy.io.wavfile
import torch

import model.pipeline
from mheval.adapters import create_adapter, parse_model_spec
from mheval.media import MediaError, probe
from mheval.suites import load_suite
from model.__main__ import main as model_main
from model.audio_vae import PIPELINE_SAMPLE_RATE, load_reference_audio
from model.pipeline import MagiHumanPipeline, audio_samples
from model.sampling import denoise

SPEECH = ("Good morning everyone, thank you for coming today. The quarterly report is finished and it is ready for "
          "your review.")
SECONDS = 3
SIZE = (64, 64)
AAC_FRAME = 1024


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A spoken English sentence longer than three seconds, from espeak-ng (22.05 kHz mono WAV)."""
    path = tmp_path_factory.mktemp("a2v") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), SPEECH], check=True)
    return path


def spy_on_dit_audio(monkeypatch) -> list[torch.Tensor]:
    """Record the audio latent handed to the DiT at every forward."""
    seen = []
    velocity_fn = model.pipeline.dit_velocity_fn

    def recording(dit, coords_style):
        velocity = velocity_fn(dit, coords_style)

        def call(video, audio, text):
            seen.append(audio.clone())
            return velocity(video, audio, text)
        return call
    monkeypatch.setattr(model.pipeline, "dit_velocity_fn", recording)
    return seen


def test_reference_audio_is_loaded_like_the_original(speech):
    """Mono at 51.2 kHz on the 16-bit grid (as `whisper.load_audio` gives it), cut to the clip length, two equal
    channels."""
    full = load_reference_audio(speech)
    assert full.shape[0] == 2 and torch.equal(full[0], full[1])
    assert full.shape[1] > SECONDS * PIPELINE_SAMPLE_RATE
    assert torch.equal(full[0] * 32768, (full[0] * 32768).round())
    cut = load_reference_audio(speech, SECONDS)
    assert torch.equal(cut, full[:, :SECONDS * PIPELINE_SAMPLE_RATE])


def test_a2v_clip_carries_the_encoded_speech(speech, tmp_path, monkeypatch):
    """UniPC (base preset): the DiT sees the encoded speech at every step, the clip's audio is that latent decoded,
    and the frame count follows the audio: 3 s → Na = 75 latents → T = 19 → 73 frames."""
    seen = spy_on_dit_audio(monkeypatch)
    pipe = MagiHumanPipeline.tiny_random("base", device="cpu")
    result = pipe.generate("A man says: good morning.", audio=speech, seconds=SECONDS, width=SIZE[0],
                           height=SIZE[1], seed=5, out=tmp_path / "a2v.mp4")
    encoded = pipe.encode_audio(speech, SECONDS, torch.Generator().manual_seed(5))   # the run's first draw
    assert encoded.shape == (1, 25 * SECONDS, 64)
    assert len(seen) == 2 * 32 and all(torch.equal(audio, encoded) for audio in seen)
    assert torch.equal(result.latents.audio, encoded)
    assert np.array_equal(result.audio, pipe.decode_audio(encoded))
    assert result.audio.shape == (audio_samples(25 * SECONDS), 2) == (SECONDS * 44_100, 2)
    assert result.frames.shape[0] == 4 * ((25 * SECONDS - 1) // 4) + 1 == 73
    assert list(result.timings)[0] == "audio encoding"
    info = probe(tmp_path / "a2v.mp4")
    assert info.frame_count == 73 and info.has_audio
    assert SECONDS * 44_100 <= round(info.audio_seconds * 44_100) <= SECONDS * 44_100 + AAC_FRAME


def test_short_speech_makes_a_short_clip(speech, tmp_path):
    """Audio shorter than the requested seconds sets the length: 1.2 s → Na = 30 → T = 8 → 29 frames."""
    waveform = load_reference_audio(speech, 1.2)[0].numpy()
    scipy.io.wavfile.write(tmp_path / "short.wav", PIPELINE_SAMPLE_RATE, (waveform * 32768).astype(np.int16))
    pipe = MagiHumanPipeline.tiny_random("distill", device="cpu")
    result = pipe.generate("A man says: hi.", audio=tmp_path / "short.wav", seconds=4, width=SIZE[0],
                           height=SIZE[1])
    assert result.latents.audio.shape[1] == 30 and result.frames.shape[0] == 29


def test_distilled_steps_update_the_speech_unless_held(speech, monkeypatch):
    """The original's distill path steps the encoded audio like generated audio (reproduced by default);
    hold_audio keeps it fixed."""
    pipe = MagiHumanPipeline.tiny_random("distill", device="cpu")
    encoded = pipe.encode_audio(speech, SECONDS, torch.Generator().manual_seed(5))
    as_original = pipe.generate("A man says: hi.", audio=speech, seconds=SECONDS, width=SIZE[0], height=SIZE[1],
                                seed=5)
    assert not torch.allclose(as_original.latents.audio, encoded)
    seen = spy_on_dit_audio(monkeypatch)
    held = pipe.generate("A man says: hi.", audio=speech, seconds=SECONDS, width=SIZE[0], height=SIZE[1], seed=5,
                         hold_audio=True)
    assert len(seen) == 8 and all(torch.equal(audio, encoded) for audio in seen)
    assert torch.equal(held.latents.audio, encoded)


def test_holding_the_audio_keeps_the_video_noise_draws():
    """With the audio held, its per-step noise is still drawn, so the video's noise draws are the same as in the
    original's run: with a velocity of zero the video trajectories are equal."""
    def zero_velocity(video, audio, text):
        return torch.zeros_like(video), torch.zeros_like(audio)
    video, audio = torch.randn(1, 48, 2, 2, 2), torch.randn(1, 9, 64)
    runs = {hold: denoise(zero_velocity, video, audio, None, None, num_steps=8, cfg_number=1, super_resolution=False,
                          generator=torch.Generator().manual_seed(0), audio_is_condition=True,
                          distill_steps_a2v_audio=not hold)
            for hold in (False, True)}
    assert torch.equal(runs[False][0], runs[True][0])
    assert torch.equal(runs[True][1], audio) and not torch.equal(runs[False][1], audio)


def test_bad_reference_audio_is_a_clear_error(tmp_path):
    pipe = MagiHumanPipeline.tiny_random("distill", device="cpu")
    with pytest.raises(MediaError, match="nope.wav: file does not exist"):
        pipe.generate("A man says: hi.", audio=tmp_path / "nope.wav", seconds=1, width=64, height=64)
    scipy.io.wavfile.write(tmp_path / "click.wav", PIPELINE_SAMPLE_RATE, np.zeros(1000, np.int16))
    with pytest.raises(ValueError, match="click.wav: 1000 samples .* shorter than one audio latent"):
        pipe.generate("A man says: hi.", audio=tmp_path / "click.wav", seconds=1, width=64, height=64)
    assert model_main(["generate", "--prompt", "hi", "--audio", str(tmp_path / "nope.wav"), "--seconds", "1",
                       "--out", str(tmp_path / "x.mp4"), "--no-progress"]) == 2


def test_cli_a2v(speech, tmp_path, capsys):
    out = tmp_path / "cli.mp4"
    assert model_main(["generate", "--prompt", "A man says: good morning.", "--audio", str(speech), "--seconds", "2",
                       "--width", "64", "--height", "64", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert f"a2v from {speech}" in printed.err and "audio encoding" in printed.out
    assert probe(out).frame_count == 4 * ((25 * 2 - 1) // 4) + 1


def test_adapter_generates_suite_items_with_reference_audio(speech, tmp_path):
    """A suite item naming `reference_audio` is generated audio-conditioned; the speed table gets its encoding
    time."""
    (tmp_path / "speech.wav").write_bytes(speech.read_bytes())
    suite = tmp_path / "lipsync.toml"
    suite.write_text('[suite]\nname = "lipsync"\n[[item]]\nid = "en-01"\nlanguage = "en"\nseconds = 2.0\n'
                     'resolution = "64x64"\nreference_audio = "speech.wav"\nprompt = \'\'\'A man talks.\n\n'
                     'Dialogue:\n<Calm man, English>: "Good morning."\n\nBackground Sound:\n<None>\'\'\'\n')
    item = load_suite(suite).items[0]
    adapter = create_adapter(parse_model_spec("magihuman"), {"hold_audio": "yes"})
    assert adapter.options.hold_audio is True
    meta = adapter.generate(item, tmp_path / "clip.mp4", seed=1)
    assert meta["mode"] == "T2V+a2v" and meta["frames"] == 49 and "audio_encoding" in meta["timings"]
    with pytest.raises(ValueError, match="unknown option.*hold_audo"):
        create_adapter(parse_model_spec("magihuman"), {"hold_audo": "yes"})
