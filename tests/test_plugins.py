"""Declared adapter/metric options and third-party plug-ins registered through entry points.

The plug-in is a throw-away distribution written into a temporary directory as pip would install it there
(`pip install --target`): a package plus a `.dist-info` with `entry_points.txt`. `mheval` runs in a subprocess with
that directory on PYTHONPATH, so the entry points are discovered exactly as for an installed package.
"""
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mheval.adapters import Adapter, create_adapter, parse_model_spec
from mheval.cli import main
from mheval.metrics import create_metric
from mheval.metrics.options import describe_options, parse_options

REPO = Path(__file__).resolve().parents[1]

PLUGIN_MODULE = '''
"""A third-party model and metric, known to mheval only through entry points."""
from dataclasses import dataclass, field

import numpy as np

from mheval.adapters import Adapter
from mheval.media import write_mp4
from mheval.metrics import Metric


@dataclass(frozen=True)
class ToneOptions:
    pitch_hz: float = field(default=440.0, metadata={"help": "frequency of the tone"})


class ToneAdapter(Adapter):
    name = "tone"
    description = "grey frames and a sine tone (a plug-in for tests)"
    options_class = ToneOptions

    def generate(self, item, output, seed):
        frames = np.full((25, 64, 64, 3), 128, np.uint8)
        t = np.arange(16000) / 16000
        write_mp4(output, frames, 25, 0.3 * np.sin(2 * np.pi * self.options.pitch_hz * t), 16000)
        return {"timings": {"render": 0.01}, "pitch_hz": self.options.pitch_hz}


class PeakMetric(Metric):
    name = "peak"
    version = "1"
    inputs = ("audio",)
    fields = ("peak",)
    headline = "peak"
    description = "largest absolute audio sample (a plug-in for tests)"

    def score(self, clip):
        return {"peak": float(np.abs(clip.media.audio_16k).max())}
'''


def write_plugin(directory: Path, entry_points: str) -> None:
    (directory / "toneplug").mkdir(parents=True)
    (directory / "toneplug" / "__init__.py").write_text(PLUGIN_MODULE)
    info = directory / "toneplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toneplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (info / "RECORD").write_text("")


GOOD_ENTRY_POINTS = """\
    [mheval.adapters]
    tone = toneplug:ToneAdapter

    [mheval.metrics]
    peak = toneplug:PeakMetric
    """


def mheval(plugin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(plugin_dir)])}
    return subprocess.run([sys.executable, "-m", "mheval.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("site")
    write_plugin(directory, GOOD_ENTRY_POINTS)
    return directory


def test_run_uses_a_plugin_adapter_and_metric(plugin_dir, tmp_path):
    out = tmp_path / "run"
    result = mheval(plugin_dir, "run", "--suite", "smoke", "--limit", "1", "--languages", "en", "--models",
                    "tone,high=tone", "--model-option", "high.pitch_hz=880", "--metrics", "peak", "--out", str(out),
                    "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "peak" in result.stdout and "tone" in result.stdout and "high" in result.stdout
    clips = json.loads((out / "exports" / "results.json").read_text())["clips"]
    assert {clip["model"] for clip in clips} == {"tone", "high"}
    assert all(clip["peak.status"] == "ok" and clip["peak.peak"] > 0.2 for clip in clips)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["high"]["config"]["pitch_hz"] == 880.0


def test_listing_shows_plugins_with_their_options(plugin_dir):
    adapters = mheval(plugin_dir, "adapters")
    assert adapters.returncode == 0, adapters.stderr
    assert "tone  (toneplug)" in adapters.stdout and "pitch_hz  float, default 440.0: frequency" in adapters.stdout
    assert "shift_ms  float, default 0.0" in adapters.stdout  # built-ins still there
    metrics = mheval(plugin_dir, "metrics")
    assert "peak  (toneplug)" in metrics.stdout and "wer  (mheval)" in metrics.stdout


def test_a_broken_plugin_is_reported_and_does_not_break_mheval(tmp_path):
    write_plugin(tmp_path, """\
        [mheval.adapters]
        tone = toneplug:ToneAdapter
        ghost = toneplug:NoSuchAdapter
        """)
    listing = mheval(tmp_path, "adapters")
    assert listing.returncode == 0 and "tone  (toneplug)" in listing.stdout
    assert "plug-in 'ghost' could not be loaded" in listing.stdout and "NoSuchAdapter" in listing.stdout
    run = mheval(tmp_path, "run", "--suite", "smoke", "--models", "ghost", "--out", str(tmp_path / "r"))
    assert run.returncode == 2 and "installed but broken" in run.stderr


def test_mistyped_option_exits_2_listing_the_valid_options(tmp_path, capsys):
    code = main(["run", "--suite", "smoke", "--models", "puppet", "--model-option", "puppet.shfit_ms=200",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2
    assert "unknown option shfit_ms" in error and "shift_ms (float, default 0.0)" in error and "voice (str" in error
    assert not (tmp_path / "run").exists()  # nothing was generated or stored


def test_badly_typed_values_and_unknown_metric_options_are_errors(tmp_path, capsys):
    assert main(["run", "--suite", "smoke", "--models", "puppet", "--model-option", "puppet.shift_ms=late",
                 "--out", str(tmp_path / "run")]) == 2
    assert "option shift_ms: expected a number, got 'late'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="metric sync: unknown option max_ofset_ms; valid options: "
                                         "max_offset_ms"):
        create_metric("sync", max_ofset_ms="300")
    with pytest.raises(ValueError, match="metric speed: unknown option x; valid options: none"):
        create_metric("speed", x="1")


def test_options_are_typed_and_part_of_the_config():
    late = create_adapter(parse_model_spec("late=puppet"), {"shift_ms": "200"})
    assert late.options.shift_ms == 200.0 and late.config()["shift_ms"] == 200.0
    same = create_adapter(parse_model_spec("late=puppet"), {"shift_ms": 200})
    assert same.config_hash() == late.config_hash()  # "200" and 200 are the same run
    assert create_adapter(parse_model_spec("command:echo {output}"), {"timeout": "5"}).options.timeout == 5.0


def test_declared_option_parsing_converts_optional_bool_and_choices():
    @dataclass(frozen=True)
    class Options:
        steps: int = field(default=8, metadata={"help": "denoising steps"})
        guidance: float | None = field(default=None, metadata={"help": "none: the model's"})
        offload: bool = False
        dtype: str = field(default="bfloat16", metadata={"choices": ("bfloat16", "float32")})

    parsed = parse_options(Options, {"steps": "4", "guidance": "3.5", "offload": "yes", "dtype": "float32"})
    assert parsed == Options(steps=4, guidance=3.5, offload=True, dtype="float32")
    assert parse_options(Options, {"guidance": "none"}).guidance is None
    with pytest.raises(ValueError, match="steps: expected a whole number, got '4.5'"):
        parse_options(Options, {"steps": "4.5"})
    with pytest.raises(ValueError, match="dtype: 'fp8' is not one of bfloat16, float32"):
        parse_options(Options, {"dtype": "fp8"})
    info = {option.name: option for option in describe_options(Options)}
    assert info["guidance"].type == "float or none" and info["steps"].help == "denoising steps"


def test_adapters_without_options_reject_any():
    class Bare(Adapter):
        name = "bare"
        description = "no options"

    with pytest.raises(ValueError, match="adapter bare: unknown option speed; valid options: none"):
        Bare(speed="1")
