"""`python -m model generate --prompt ... --out clip.mp4`: one clip from the daVinci-MagiHuman pipeline.

Prints what it is about to do, a progress bar per stage, and the wall time of every stage at the end. Without
--checkpoints it runs `magihuman-tiny-random` (random weights: the clip is noise of the right shape).
With --audio it makes an audio-conditioned clip (a2v): the lips follow the given speech, which becomes the clip's
audio track. `python -m model layout` prints the checkpoint directory layout; `python -m model presets` lists the
presets.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from model.fastpath import ATTENTION_BACKENDS, COMPILE_MODES, FastPathConfig
from model.pipeline import (CHECKPOINT_LAYOUT, DEFAULT_HEIGHT, DEFAULT_PRESET, DEFAULT_SECONDS, DEFAULT_SEED,
                            DEFAULT_WIDTH, FPS, PRESETS, MagiHumanPipeline, audio_samples, clip_shape,
                            round_resolution)
from model.shapes import AUDIO_LATENTS_PER_SECOND, LatentShape
from model.video_io import MediaError


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the (enhanced) prompt text")
    prompt.add_argument("--prompt-file", type=Path, help="read the prompt from this file")
    parser.add_argument("--image", type=Path, default=None, help="reference image: TI2V (default: T2V)")
    parser.add_argument("--audio", type=Path, default=None,
                        help="reference speech (any audio or video file): a2v, the clip follows this audio, cut to "
                             "--seconds, and its audio track is this speech through the audio VAE")
    parser.add_argument("--hold-audio", action="store_true",
                        help="a2v with the distill preset: keep the reference audio fixed during the steps (the "
                             "original still updates it, which looks like a bug; default: as the original)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                        help=f"configuration (default {DEFAULT_PRESET})")
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS,
                        help=f"whole seconds (default {DEFAULT_SECONDS}); with --audio, at most this much of it")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="base width, rounded down to a multiple of 32")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="base height, rounded down likewise")
    parser.add_argument("--sr-width", type=int, default=None, help="SR presets: output width (default: the preset's)")
    parser.add_argument("--sr-height", type=int, default=None, help="SR presets: output height")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"noise seed (default {DEFAULT_SEED})")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="checkpoint directory (`python -m model layout`); omitted: tiny random weights")
    parser.add_argument("--weights-seed", type=int, default=0, help="seed of the tiny random weights")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--offload", action="store_true", help="keep networks on the CPU between stages")
    parser.add_argument("--decoder", choices=("turbo", "wan"), default="turbo", help="video decoder (default turbo)")
    parser.add_argument("--out", type=Path, required=True, help="output .mp4")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_fast_path_arguments(parser.add_argument_group("GPU fast paths (model/fastpath.py; default: none)"))


def add_fast_path_arguments(parser) -> None:
    """One flag per `FastPathConfig` field: --attention/--compile take a choice, the booleans are switches."""
    for spec in fields(FastPathConfig):
        flag = "--" + spec.name.replace("_", "-")
        if spec.type == "bool":
            parser.add_argument(flag, dest=spec.name, action="store_true", help=spec.metadata["help"])
        else:
            choices = ATTENTION_BACKENDS if spec.name == "attention" else COMPILE_MODES
            parser.add_argument(flag, dest=spec.name, choices=list(choices), default=spec.default,
                                help=spec.metadata["help"])


def fast_path_config(args: argparse.Namespace) -> FastPathConfig:
    return FastPathConfig(**{spec.name: getattr(args, spec.name) for spec in fields(FastPathConfig)})


class StageProgress:
    """One tqdm bar per stage: the denoising stages count steps, the others appear as single-step bars."""

    def __init__(self, disable: bool = False):
        self.disable = disable
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:<16}", unit="step", file=sys.stderr,
                                          disable=self.disable)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


def stage_table(timings: dict[str, float]) -> str:
    width = max(map(len, timings), default=5)
    rows = [("stage", "seconds"), *((stage, f"{seconds:7.2f}") for stage, seconds in timings.items()),
            ("total", f"{sum(timings.values()):7.2f}")]
    return "\n".join(f"{stage:<{width}}  {seconds:>7}" for stage, seconds in rows)


def run_generate(args: argparse.Namespace) -> int:
    prompt = args.prompt if args.prompt is not None else args.prompt_file.read_text()
    preset = PRESETS[args.preset]
    shape = clip_shape(args.seconds, args.width, args.height)
    if (args.sr_width is None) != (args.sr_height is None):
        raise SystemExit("give both --sr-width and --sr-height, or neither")
    sr_size = (args.sr_width, args.sr_height) if args.sr_width else preset.sr_size
    options = {"preset": preset.name, "device": args.device, "offload": args.offload, "decoder": args.decoder,
               "fast": fast_path_config(args)}
    if args.checkpoints is None:
        print("no --checkpoints: using magihuman-tiny-random (RANDOM weights, the clip is noise)", file=sys.stderr)
        pipeline = MagiHumanPipeline.tiny_random(seed=args.weights_seed, **options)
    else:
        print(f"loading checkpoints from {args.checkpoints} ...", file=sys.stderr)
        pipeline = MagiHumanPipeline.from_checkpoints(args.checkpoints, **options)
    width, height = round_resolution(args.width, args.height)
    mode = ("TI2V from " + str(args.image) if args.image else "T2V") + (f", a2v from {args.audio}" if args.audio else "")
    print(f"model {pipeline.label}, preset {preset.name} ({preset.description}), {mode}, device {pipeline.device}"
          f"{', offload' if args.offload else ''}, seed {args.seed}", file=sys.stderr)
    sizes = f"base {width}x{height}" + (", SR {}x{}".format(*round_resolution(*sr_size)) if preset.sr_model else "")
    if args.audio:
        longest = LatentShape.for_audio(AUDIO_LATENTS_PER_SECOND * args.seconds, args.width, args.height)
        print(f"length follows the audio, cut to {args.seconds} s (then {longest.pixel_frames} frames at {FPS} fps); "
              f"{sizes}", file=sys.stderr)
    else:
        print(f"{args.seconds} s: {shape.pixel_frames} frames at {FPS} fps, {shape.frames} latent frames, "
              f"{shape.audio_frames} audio latents ({audio_samples(shape.audio_frames)} samples at 44.1 kHz); "
              f"{sizes}", file=sys.stderr)
    result = pipeline.generate(prompt, image=args.image, seconds=args.seconds, width=args.width, height=args.height,
                               seed=args.seed, sr_size=sr_size, out=args.out,
                               progress=StageProgress(disable=args.no_progress), audio=args.audio,
                               hold_audio=args.hold_audio)
    print(stage_table(result.timings))
    frames, out_height, out_width, _ = result.frames.shape
    print(f"wrote {args.out}: {frames} frames {out_width}x{out_height} at {result.fps} fps, "
          f"{len(result.audio) / result.sample_rate:.3f} s of audio at {result.sample_rate} Hz")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m model") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_arguments(sub.add_parser("generate", help="generate one clip"))
    sub.add_parser("layout", help="print the checkpoint directory layout")
    sub.add_parser("presets", help="list the presets")
    args = parser.parse_args(argv)
    if args.command == "layout":
        print(CHECKPOINT_LAYOUT, end="")
        return 0
    if args.command == "presets":
        for preset in PRESETS.values():
            print(f"{preset.name:<9} {preset.description}")
        return 0
    try:
        return run_generate(args)
    except (ValueError, FileNotFoundError, MediaError) as err:   # bad request, checkpoint layout or audio file
        print(f"{parser.prog} generate: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
