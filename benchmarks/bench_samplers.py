"""Wall time of the base sampler (32 steps × 2 CFG passes) vs the distilled sampler (8 steps), same DiT, same run.

    python benchmarks/bench_samplers.py [--seconds 5] [--loop-seconds 1 --loop-width 256 --loop-height 128
                                         --loop-text 128] [--full]

The DiT is bench_dit's CPU configuration (8 layers, hidden 1024, random weights, fp32). Both samplers are the real
`model.sampling.generate_latents` loops (noise draws, every DiT call with packing, CFG, UniPC or DDIM-style steps).

1. Complete loops at a reduced clip (`--loop-*`, default 1 s at 256x128 with 128 text tokens ≈ 380 tokens), so
   72 DiT forwards fit in a minute or two on this 2-core machine.
2. The ~4k-token clip of bench_dit (`--seconds`, 448x256, 640 text tokens): running 72 forwards there takes tens
   of minutes, so by default the loop time is assembled from two measured parts: the mean time of one DiT call
   (pack + forward + unpack, after a warm-up) times the number of calls, plus the complete loop run with the DiT
   replaced by a zero-cost velocity function (everything else the sampler does, at the real latent sizes).
   `--full` instead runs both complete loops at this size.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from bench_dit import cpu_bench_config
from model.dit import DiTModel
from model.sampling import BASE_SAMPLER, DISTILL_SAMPLER, SamplerConfig, VelocityFn, dit_velocity_fn, generate_latents
from model.shapes import LatentShape
from model.text_encoder import TextEmbedding

SAMPLERS = {"base": BASE_SAMPLER, "distill": DISTILL_SAMPLER}


def random_text(tokens: int, width: int, seed: int) -> TextEmbedding:
    return TextEmbedding(torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(seed)), tokens)


class CountingVelocity:
    """Wraps a velocity function and counts its calls."""

    def __init__(self, velocity_fn: VelocityFn):
        self.velocity_fn, self.calls = velocity_fn, 0

    def __call__(self, video, audio, text):
        self.calls += 1
        return self.velocity_fn(video, audio, text)


@dataclass
class Timing:
    wall: float    # seconds
    cpu: float     # process CPU seconds (all threads), less sensitive to other users of the machine
    calls: int     # DiT calls


def time_loop(velocity_fn: VelocityFn, shape: LatentShape, config: SamplerConfig, text_tokens: int,
              text_width: int, repeats: int) -> Timing:
    """Best of `repeats` complete sampling runs."""
    text, negative = random_text(text_tokens, text_width, 1), random_text(text_tokens, text_width, 2)
    best = None
    for _ in range(repeats):
        counted = CountingVelocity(velocity_fn)
        wall, cpu = time.perf_counter(), time.process_time()
        generate_latents(counted, text, negative, shape, config, seed=0)
        timing = Timing(time.perf_counter() - wall, time.process_time() - cpu, counted.calls)
        best = timing if best is None or timing.wall < best.wall else best
    return best


def zero_cost_velocity(shape: LatentShape) -> VelocityFn:
    video, audio = torch.randn(shape.video), torch.randn(shape.audio)
    return lambda *_: (video, audio)


def warm_up(velocity_fn: VelocityFn, shape: LatentShape, text: TextEmbedding) -> None:
    velocity_fn(torch.randn(shape.video), torch.randn(shape.audio), text)


def mean_call(velocity_fn: VelocityFn, shape: LatentShape, text: TextEmbedding, repeats: int) -> Timing:
    """Mean over `repeats` DiT calls after one warm-up call."""
    video, audio = torch.randn(shape.video), torch.randn(shape.audio)
    warm_up(velocity_fn, shape, text)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        velocity_fn(video, audio, text)
    return Timing((time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats, 1)


def report(label: str, timings: dict[str, Timing]) -> None:
    base, distill = timings["base"], timings["distill"]
    print(f"{label}: base {base.wall:.2f} s wall / {base.cpu:.2f} s CPU ({base.calls} DiT calls), "
          f"distill {distill.wall:.2f} s wall / {distill.cpu:.2f} s CPU ({distill.calls} DiT calls), "
          f"ratio {base.wall / distill.wall:.2f}x wall, {base.cpu / distill.cpu:.2f}x CPU")


def num_tokens(shape: LatentShape, text_tokens: int) -> int:
    return shape.video_tokens + shape.audio_frames + text_tokens


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--text", type=int, default=640, help="text tokens of the ~4k-token clip")
    parser.add_argument("--repeats", type=int, default=2, help="timed DiT calls at the ~4k-token clip")
    parser.add_argument("--loop-seconds", type=int, default=1)
    parser.add_argument("--loop-width", type=int, default=256)
    parser.add_argument("--loop-height", type=int, default=128)
    parser.add_argument("--loop-text", type=int, default=128)
    parser.add_argument("--loop-repeats", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="complete loops at the ~4k-token clip too")
    args = parser.parse_args(argv)

    cfg = cpu_bench_config(args.layers, args.hidden)
    model = DiTModel(cfg).eval()
    model.init_weights_(torch.Generator().manual_seed(0))
    dit = dit_velocity_fn(model, "v2")
    text_width = cfg.text_in_channels
    print(f"threads {torch.get_num_threads()}, layers {cfg.num_layers}, hidden {cfg.hidden_size}")

    loop_shape = LatentShape.for_request(args.loop_seconds, args.loop_width, args.loop_height)
    warm_up(dit, loop_shape, random_text(args.loop_text, text_width, 1))
    report(f"complete loops, {num_tokens(loop_shape, args.loop_text)} tokens, best of {args.loop_repeats}",
           {name: time_loop(dit, loop_shape, config, args.loop_text, text_width, args.loop_repeats)
            for name, config in SAMPLERS.items()})

    shape = LatentShape.for_request(args.seconds, 448, 256)
    label = f"{num_tokens(shape, args.text)} tokens"
    if args.full:
        warm_up(dit, shape, random_text(args.text, text_width, 1))
        report(f"complete loops, {label}",
               {name: time_loop(dit, shape, config, args.text, text_width, 1) for name, config in SAMPLERS.items()})
        return
    call = mean_call(dit, shape, random_text(args.text, text_width, 1), args.repeats)
    overhead = {name: time_loop(zero_cost_velocity(shape), shape, config, args.text, text_width, 3)
                for name, config in SAMPLERS.items()}
    print(f"{label}: one DiT call {call.wall:.2f} s wall / {call.cpu:.2f} s CPU (mean of {args.repeats}); "
          f"sampler without DiT: base {overhead['base'].wall:.3f} s, distill {overhead['distill'].wall:.3f} s")
    report(f"assembled loops, {label}",
           {name: Timing(t.wall + t.calls * call.wall, t.cpu + t.calls * call.cpu, t.calls)
            for name, t in overhead.items()})

if __name__ == "__main__":
    main()
