"""How big is the DiT, and does a given resolution/duration fit a GPU? Built on the meta device (no memory).

    python -m model.sizing [--resolution 256p|540p|1080p|WIDTHxHEIGHT] [--seconds 5]

Prints parameter counts per component and an estimate of GPU memory for one DiT forward:

* weights: the bytes of every parameter in the dtype the module stores it (block linears bf16, the rest fp32);
* activations: packed sequence length L × the bytes per token that are alive at the peak of a forward. Inference
  keeps no activations between layers, so the peak is inside one layer: the fp32 residual stream and the packed
  input/RoPE/output that live through the forward, plus the largest layer-internal set, which is inside the MLP
  (normed input in fp32 and bf16, the fp32 up projection, and the activation's fp32 temporaries); for the released
  config a GELU7 layer (intermediate 4 x hidden) peaks at ~440 KB/token, well above attention's ~170 KB/token
  (q/k/v/gates in fp32 and bf16 plus RoPE temporaries).
  Attention is assumed to be flash/memory-efficient (O(L) memory), as on CUDA; a math-kernel fallback would add
  L² scores per head.

Checked on an H100 (benchmarks/bench_gpu.py, benchmarks/RESULTS.md): the weights are exact; the activation term is an
upper bound, 1.33x the measured peak at 256p, 540p and 1080p alike (PyTorch frees some MLP temporaries earlier).

Not included: CUDA context and allocator slack (typically 1-3 GiB), the text encoder, the VAEs, and a second (SR)
DiT. CFG runs its two branches as separate forwards, so it does not double the activations.
"""
from __future__ import annotations

import argparse
import itertools
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from model.dit import DiTConfig, DiTModel
from model.shapes import LatentShape
from model.text_encoder import TARGET_LENGTH

# Pixel sizes of the released example stages (W x H).
RESOLUTIONS = {"256p": (448, 256), "540p": (896, 512), "1080p": (1920, 1088)}
GIB = 1024**3


def build_meta_model(cfg: Optional[DiTConfig] = None) -> DiTModel:
    with torch.device("meta"):
        return DiTModel(cfg or DiTConfig())


@dataclass
class Component:
    name: str
    parameters: int
    bytes: int
    layers: int = 0  # > 0 for a run of identical layers


def _sum(params) -> tuple[int, int]:
    params = list(params)
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


def components(model: DiTModel) -> list[Component]:
    """Adapter, runs of identical layers (same experts and activation), output heads."""
    cfg = model.cfg
    out = [Component("adapter (embedders)", *_sum(model.adapter.parameters()))]
    kind = lambda i: (cfg.num_experts(i), i in cfg.gelu7_layers, i in cfg.local_attn_layers)  # noqa: E731
    for (experts, gelu, local), run in itertools.groupby(range(cfg.num_layers), key=kind):
        run = list(run)
        label = "mm" if experts > 1 else "shared"
        detail = f"{experts} experts, " if experts > 1 else ""
        detail += ("GELU7" if gelu else "SwiGLU7") + (", local attn" if local else "")
        count, size = _sum(p for i in run for p in model.block.layers[i].parameters())
        out.append(Component(f"{label} layers {run[0]}-{run[-1]} ({detail})", count, size, len(run)))
    heads = [p for name, p in model.named_parameters() if name.startswith("final_")]
    out.append(Component("final norms + linears", *_sum(heads)))
    return out


@dataclass
class SequenceSize:
    width: int
    height: int
    seconds: int
    video_tokens: int
    audio_tokens: int
    text_tokens: int

    @property
    def length(self) -> int:
        return self.video_tokens + self.audio_tokens + self.text_tokens


def sequence_for(width: int, height: int, seconds: int) -> SequenceSize:
    """Token counts of the packed sequence the pipeline builds for this request (sizes from `LatentShape`)."""
    shape = LatentShape.for_request(seconds, width, height)
    return SequenceSize(*shape.pixel_size, seconds, shape.video_tokens, shape.audio_frames, TARGET_LENGTH)


def activation_bytes_per_token(cfg: DiTConfig) -> int:
    """Bytes per token alive at the peak of one forward with bf16 compute (see module docstring)."""
    fp32 = 4
    through_forward = fp32 * (cfg.input_channels + cfg.hidden_size + cfg.rotary_dims + cfg.output_channels)
    return through_forward + max(_mlp_peak_bytes_per_token(cfg, layer) for layer in range(cfg.num_layers))


def _mlp_peak_bytes_per_token(cfg: DiTConfig, layer: int) -> int:
    """Normed input (fp32 + bf16 copy), the fp32 up projection, and up to four fp32 temporaries of the intermediate
    size inside GELU7/SwiGLU7 (clamps, sigmoid, products)."""
    fp32, bf16 = 4, 2
    gelu = layer in cfg.gelu7_layers
    intermediate = cfg.gelu7_intermediate if gelu else cfg.swiglu7_intermediate
    up = intermediate if gelu else 2 * intermediate
    return (fp32 + bf16) * cfg.hidden_size + fp32 * up + 4 * fp32 * intermediate


def memory_estimate(cfg: DiTConfig, model: DiTModel, seq: SequenceSize) -> dict[str, float]:
    weights = _sum(model.parameters())[1] + _sum(model.buffers())[1]
    activations = seq.length * activation_bytes_per_token(cfg)
    return {"weights": weights / GIB, "activations": activations / GIB, "total": (weights + activations) / GIB}


def parse_resolution(text: str) -> tuple[int, int]:
    if text in RESOLUTIONS:
        return RESOLUTIONS[text]
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"resolution must be one of {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT")
    return int(match.group(1)), int(match.group(2))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.sizing", description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=parse_resolution, default=RESOLUTIONS["256p"],
                        help="256p (448x256), 540p (896x512), 1080p (1920x1088) or WIDTHxHEIGHT in pixels")
    parser.add_argument("--seconds", type=int, default=4, help="clip length in seconds (default 4)")
    args = parser.parse_args(argv)

    cfg = DiTConfig()
    model = build_meta_model(cfg)
    rows = components(model)
    print("daVinci-MagiHuman DiT, released configuration (built on the meta device)")
    for row in rows:
        each = f"   ({row.parameters // row.layers:,} per layer)" if row.layers else ""
        print(f"  {row.name:<42} {row.parameters:>16,} params  {row.bytes / GIB:7.2f} GiB{each}")
    total = sum(row.parameters for row in rows)
    print(f"  {'total':<42} {total:>16,} params  {sum(r.bytes for r in rows) / GIB:7.2f} GiB")

    seq = sequence_for(*args.resolution, args.seconds)
    memory = memory_estimate(cfg, model, seq)
    print(f"\nSequence at {seq.width}x{seq.height}, {seq.seconds} s: {seq.video_tokens:,} video + "
          f"{seq.audio_tokens} audio + ≤{seq.text_tokens} text = {seq.length:,} tokens")
    print(f"Estimated GPU memory for one forward: weights {memory['weights']:.1f} GiB (bf16 linears, fp32 rest) + "
          f"activations {memory['activations']:.1f} GiB ({activation_bytes_per_token(cfg):,} B/token at the MLP peak)"
          f" = {memory['total']:.1f} GiB, plus CUDA context, text encoder and VAEs (an upper bound: on an H100 the "
          f"measured activations were 0.75x this term)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
