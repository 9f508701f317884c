"""Reading clips on the streams' clock, and the one mp4 writer shared by the harness and the generator."""
import subprocess
import sys

import av
import numpy as np
import pytest

import model.video_io
from mheval import media
from mheval.media import ClipMedia, MediaError, NotApplicable, probe, read_audio, write_mp4

RATE = 16_000


def _frames(count: int, size=(64, 96)) -> np.ndarray:
    return np.stack([np.full((*size, 3), 4 * index, np.uint8) for index in range(count)])


def test_harness_and_generator_write_clips_alike(tmp_path):
    """Issue 12 item 19: one H.264 + AAC writer for the puppet, `mheval validate` and the generator. Audio is [N] or
    [N, C] for every caller (the harness's writer took [C, N], the generator's [N, C], at different AAC bit rates)."""
    assert media.write_mp4 is model.video_io.write_mp4
    stereo = np.stack([np.sin(np.arange(RATE) / 10), np.zeros(RATE)], axis=1).astype(np.float32) * 0.5   # [N, 2]
    write_mp4(tmp_path / "stereo.mp4", _frames(25), 25, stereo, RATE)
    with av.open(str(tmp_path / "stereo.mp4")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.channels == 2
        decoded = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)   # [2, N]
    assert np.abs(decoded[0]).max() > 0.3 and np.abs(decoded[1]).max() < 0.01   # the channels stayed apart


def test_writer_refuses_bad_input_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="even frame sizes"):
        write_mp4(tmp_path / "odd.mp4", np.zeros((2, 63, 64, 3), np.uint8), 25, None, RATE)
    with pytest.raises(ValueError, match=r"audio must be \[N\] or \[N, 1\|2\]"):
        write_mp4(tmp_path / "a.mp4", _frames(2), 25, np.zeros((3, RATE), np.float32), RATE)
    with pytest.raises(ValueError, match="nothing to write"):
        write_mp4(tmp_path / "none.mp4", None, 25, None, RATE)
    assert not list(tmp_path.iterdir())


def test_frame_times_and_stream_start_come_from_the_container(tmp_path):
    """Issue 12 item 4: presentation times, not indexes: a variable frame rate and a late audio track."""
    times = np.array([0.0, 0.04, 0.12, 0.16, 0.28, 0.32])
    write_mp4(tmp_path / "vfr.mp4", _frames(6), 25, np.zeros(RATE, np.float32), RATE, frame_times=times,
              audio_start=0.2)
    clip = ClipMedia(tmp_path / "vfr.mp4")
    assert [frame.time for frame in clip.frames()] == pytest.approx(times)
    assert clip.fps == pytest.approx(5 / 0.32)
    impulse = np.zeros(RATE, np.float32)
    impulse[RATE // 2: RATE // 2 + 80] = 0.8
    write_mp4(tmp_path / "late.mp4", _frames(25), 25, impulse, RATE, audio_start=0.2)
    late = ClipMedia(tmp_path / "late.mp4")
    heard = late.audio_start + np.argmax(np.abs(late.audio_16k) > 0.3) / RATE
    assert heard == pytest.approx(0.7, abs=0.002)   # written at 0.5 s of a track that starts at 0.2 s


def test_clips_with_one_stream_say_which_one_they_lack(tmp_path):
    """Issue 12 item 5: a missing stream is "not applicable" for whatever needs it, and probe records both flags."""
    write_mp4(tmp_path / "video.mp4", _frames(5), 25, None, RATE)
    write_mp4(tmp_path / "audio.mp4", None, 25, np.zeros(RATE, np.float32), RATE)
    video, audio = probe(tmp_path / "video.mp4"), probe(tmp_path / "audio.mp4")
    assert (video.has_video, video.has_audio, video.frame_count) == (True, False, 5)
    assert (audio.has_video, audio.has_audio) == (False, True) and audio.audio_seconds == pytest.approx(1, abs=0.07)
    with pytest.raises(NotApplicable, match="clip has no audio"):
        ClipMedia(tmp_path / "video.mp4").audio_16k
    with pytest.raises(NotApplicable, match="clip has no video"):
        next(ClipMedia(tmp_path / "audio.mp4").frames())
    assert ClipMedia(tmp_path / "audio.mp4").seconds == pytest.approx(1, abs=0.07)


def test_frames_are_decoded_straight_to_the_asked_size(tmp_path):
    write_mp4(tmp_path / "clip.mp4", _frames(3, size=(360, 640)), 25, None, RATE)
    clip = ClipMedia(tmp_path / "clip.mp4")
    grey = [frame.image for frame in clip.frames(short_side=90, grey=True)]
    assert [image.shape for image in grey] == [(90, 160)] * 3 and grey[2].mean() == pytest.approx(8, abs=1.5)
    assert next(clip.frames(short_side=720, enlarge=False)).image.shape == (360, 640, 3)


def test_unreadable_files_name_the_file(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="junk.mp4: not a readable media file"):
        probe(tmp_path / "junk.mp4")
    with pytest.raises(MediaError, match="file does not exist"):
        read_audio(tmp_path / "missing.mp4")


@pytest.mark.slow
def test_a_clip_has_the_same_bytes_whatever_the_process_made_before(tmp_path):
    """A clip's sha256 is its identity in the run store (cache keys, local vs Ray runs). With x264 threads, the German
    smoke clip came out with other bytes (same pictures) when the English one had been generated first in the process."""
    script = """
import hashlib, pathlib, sys
from mheval.adapters import create_adapter, parse_model_spec
from mheval.suites import load_suite
items = {item.language: item for item in load_suite("smoke").items}
puppet = create_adapter(parse_model_spec("puppet"))
for language in sys.argv[1:]:
    out = pathlib.Path.cwd() / (language + ".mp4")
    puppet.generate(items[language], out, 42)
print(hashlib.sha256(out.read_bytes()).hexdigest())
"""
    digests = []
    for order in (["de"], ["en", "fr", "de"]):
        result = subprocess.run([sys.executable, "-c", script, *order], capture_output=True, text=True, check=True,
                                cwd=tmp_path)
        digests.append(result.stdout.split()[-1])
    assert digests[0] == digests[1]


@pytest.mark.slow
def test_noise_like_video_encodes_to_the_same_bytes_every_time(tmp_path):
    """The tiny random generator's noise-like clips came out of x264 with other bytes from one encode to the next
    (macroblock-tree rate control), so two runs, or a local and a Ray run, stored different clips."""
    import hashlib

    from model.pipeline import MagiHumanPipeline

    result = MagiHumanPipeline.tiny_random().generate("A man says hello.", seconds=2, width=448, height=256, seed=0)
    digests = set()
    for attempt in range(5):
        write_mp4(tmp_path / f"{attempt}.mp4", result.frames, result.fps, result.audio, result.sample_rate)
        digests.add(hashlib.sha256((tmp_path / f"{attempt}.mp4").read_bytes()).hexdigest())
    assert len(digests) == 1


def test_moving_the_index_to_the_front_keeps_every_packet(tmp_path):
    clip = tmp_path / "clip.mp4"
    write_mp4(clip, _frames(30), 25, 0.3 * np.sin(np.arange(RATE) / 7).astype(np.float32), RATE, audio_start=0.2)
    before, audio = probe(clip), read_audio(clip)
    data = clip.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")               # the writer puts the index last
    media.move_index_to_front(clip)
    data = clip.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    assert probe(clip) == before and np.array_equal(read_audio(clip), audio)
    assert not list(tmp_path.glob(".*"))                           # no temporary file left behind
