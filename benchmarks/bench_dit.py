"""DiT forward throughput on this CPU, as a fraction of the machine's own fp32 matmul throughput (same run).

    python benchmarks/bench_dit.py [--layers 8] [--hidden 1024] [--seconds 5] [--repeats 3]

The model is the released architecture scaled down (hidden 1024, head_dim 128 → 8 query / 2 KV heads, mm layers
at both ends, GELU7 in the first two), fp32 compute and weights, on the real packing of a 448x256 clip (5 s:
3584 video + 126 audio + 640 text = 4350 tokens). FLOPs counted: every matmul (adapter, block linears, heads: 2·m·n·k) and
attention (QKᵀ and PV: 4·Lq·Lk·head_dim per query head). Norms, RoPE, activations and gating are not counted, so
the ratio is conservative. The reference is the best of several [4096×1024]·[1024×4096] fp32 matmuls measured
before and after the forwards; the forward is the best of `--repeats` timed runs after one warm-up. Both are
reported in wall time and in process CPU time (steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import time

import torch

from model.dit import DiTConfig, DiTModel, query_blocks
from model.packing import PackedSequence, pack

TEXT_TOKENS = 640


def cpu_bench_config(layers: int = 8, hidden: int = 1024) -> DiTConfig:
    mm = (0, 1, layers - 2, layers - 1)
    # fp32 weight storage: the CPU path computes in fp32, so bf16 storage would add a cast per forward
    return DiTConfig(num_layers=layers, hidden_size=hidden, head_dim=128, num_query_groups=2, mm_layers=mm,
                     gelu7_layers=(0, 1), compute_dtype=torch.float32, linear_weight_dtype=torch.float32)


def bench_inputs(seconds: int = 5, width: int = 448, height: int = 256, text_channels: int = 3584,
                 seed: int = 0) -> PackedSequence:
    """Random latents and text features with the shapes of a real clip."""
    g = torch.Generator().manual_seed(seed)
    audio_len = 25 * seconds + 1
    frames = (audio_len - 1) // 4 + 1
    video = torch.randn(1, 48, frames, height // 16, width // 16, generator=g)
    audio = torch.randn(1, audio_len, 64, generator=g)
    text = torch.randn(1, TEXT_TOKENS, text_channels, generator=g)
    return pack(video, audio, text, TEXT_TOKENS)


def forward_flops(cfg: DiTConfig, packed: PackedSequence) -> int:
    """Matmul + attention FLOPs of one forward (see module docstring)."""
    n_video, n_audio, n_text = (int((packed.modality_mapping == m).sum()) for m in range(3))
    length, d = len(packed.x), cfg.hidden_size
    flops = 2 * d * (n_video * cfg.video_in_channels + n_audio * cfg.audio_in_channels + n_text * cfg.text_in_channels)
    flops += 2 * d * (n_video * cfg.video_in_channels + n_audio * cfg.audio_in_channels)  # output heads
    q_width = cfg.num_heads_q * cfg.head_dim
    qkv_width = q_width + 2 * cfg.num_heads_kv * cfg.head_dim + cfg.num_heads_q
    full_attention = 4 * length * length * q_width
    local_attention = sum(4 * (q1 - q0) * sum(k1 - k0 for k0, k1 in keys) * q_width
                          for (q0, q1), keys in query_blocks(packed.local_q_ranges, packed.local_k_ranges, length))
    for layer in range(cfg.num_layers):
        gelu = layer in cfg.gelu7_layers
        intermediate = cfg.gelu7_intermediate if gelu else cfg.swiglu7_intermediate
        up = intermediate if gelu else 2 * intermediate
        flops += 2 * length * d * (qkv_width + q_width + up) + 2 * length * intermediate * d
        flops += local_attention if layer in cfg.local_attn_layers else full_attention
    return flops


def best_seconds(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of `repeats` calls after one warm-up. On a shared
    machine CPU time is the steadier figure: it does not count time the process was descheduled."""
    fn()
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return wall, cpu


def matmul_reference(size: int = 4096, inner: int = 1024, repeats: int = 5) -> tuple[float, float]:
    """fp32 matmul FLOP/s (wall, per CPU-second per thread count)."""
    a, b = torch.randn(size, inner), torch.randn(inner, size)
    wall, cpu = best_seconds(lambda: a @ b, repeats)
    flops = 2 * size * inner * size
    return flops / wall, flops / cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    cfg = cpu_bench_config(args.layers, args.hidden)
    model = DiTModel(cfg).eval()
    model.init_weights_(torch.Generator().manual_seed(0))
    packed = bench_inputs(args.seconds, text_channels=cfg.text_in_channels)
    flops = forward_flops(cfg, packed)

    matmul_before = matmul_reference()
    with torch.no_grad():
        wall, cpu = best_seconds(lambda: model(*packed.model_inputs()), args.repeats)
    matmul_after = matmul_reference()
    ref_wall, ref_cpu = (max(before, after) for before, after in zip(matmul_before, matmul_after))
    print(f"threads {torch.get_num_threads()}, layers {cfg.num_layers}, hidden {cfg.hidden_size}, "
          f"tokens {len(packed.x)}, forward {flops / 1e12:.3f} TFLOP")
    print(f"fp32 matmul reference: {ref_wall / 1e9:.1f} GFLOP/s wall, {ref_cpu / 1e9:.1f} GFLOP per CPU-second")
    print(f"DiT forward: {wall:.2f} s wall, {cpu:.2f} CPU-s; {flops / wall / 1e9:.1f} GFLOP/s wall = "
          f"{flops / wall / ref_wall:.2f} of matmul; {flops / cpu / 1e9:.1f} GFLOP per CPU-s = "
          f"{flops / cpu / ref_cpu:.2f} of matmul")


if __name__ == "__main__":
    main()
