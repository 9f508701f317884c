"""End to end: the distilled 8-step preset, a 5-s 256p clip, every stage timed, the plain path against each fast path
of `model/fastpath.py` in one process, and the parity fixtures re-checked on the same device in the same run.

    python benchmarks/bench_e2e.py                       # CUDA: the released sizes with random bf16 weights
    python benchmarks/bench_e2e.py --tiny                # the tiny random stack (automatic without CUDA): same code
    python benchmarks/bench_e2e.py --max-autotune --out runs/bench_e2e   # also compile mode max-autotune-no-cudagraphs

Stages, as `MagiHumanPipeline.generate` runs them for T2V: text encoding (the T5Gemma encoder on `--text-tokens`
random token ids, then the fp16 round trip and padding to 640), base denoising (8 DDIM-style steps of the DiT,
packing and unpacking included; the 256p distilled preset has no SR stage), video decode (Turbo-VAED, then uint8
frames on the host) and audio decode (Oobleck decoder, then the 44.1 kHz resample on the host).

Released sizes: the DiT of `DiTConfig()` built on the meta device and materialised on the GPU (`to_empty`, N(0, 0.02)
weights), the T5Gemma-9B encoder, Turbo-VAED and the Oobleck VAE constructed directly on the GPU; block linears,
text encoder and Turbo-VAED in bf16 as the pipeline runs them, the audio VAE in fp32. Nothing is allocated on the
CPU first. No checkpoint exists here, so the weights are random: the timings are real, the outputs noise.

Per stage: GPU time between CUDA events after warm-up (median of `--repeats` runs; wall time around it, the host
included), peak allocated memory, FLOPs from `torch.utils.flop_counter.FlopCounterMode` on the plain path (one
counter for every stage: matmuls, attention, convolutions), achieved TFLOP/s, and the share of the card's dense bf16
peak (`--peak-tflops`, else a table of known cards). The ladder of variants adds one option at a time, so each row's
gain over the row above is that option's. Each variant's first run (compilation, graph capture) is timed apart.

Parity (same run, same device): every fixture through the plain path (`bench_gpu.parity_rows`), then the DiT
fixtures through each variant's `FastVelocity` (bf16 against the fixtures' bf16 outputs with the CPU tests'
tolerance 2e-2; fp32 against the fp32 outputs, 1e-5, for variants without fp8; fp8 against bf16 within 0.15) and
Turbo-VAED channels-last (fp32 5e-5, bf16 1e-1). Writes `e2e.json` and `e2e.md` under `--out`; exits 1 when a parity
check fails.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from model.audio_vae import AudioVAE, OobleckConfig  # noqa: E402
from model.dit import DiTConfig, DiTModel  # noqa: E402
from model.fastpath import FastPathConfig, FastVelocity  # noqa: E402
from model.pipeline import (TINY_AUDIO_DECODER, TINY_AUDIO_ENCODER, TINY_DIT, TINY_TEXT, TINY_TURBO_VAED,  # noqa: E402
                            randomize_, video_frames)
from model.sampling import DISTILL_SAMPLER, dit_velocity_fn, generate_latents  # noqa: E402
from model.shapes import LatentShape  # noqa: E402
from model.sizing import RESOLUTIONS, build_meta_model  # noqa: E402
from model.text_encoder import TARGET_LENGTH, prepare_text_features  # noqa: E402
from model.turbo_vaed import TurboVAED, TurboVAEDConfig  # noqa: E402

GIB = 1024**3
PAPER_SECONDS = 2.0          # README of the original: 5-s 256p on one H100, base 1.6 s + decode 0.4 s
STAGES = ("text encoding", "base denoising", "video decode", "audio decode")
# dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets
DENSE_BF16_PEAK_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.5,
                          "H200": 989.4, "A100": 312.0}
# google/t5gemma-9b-9b-ul2's encoder (Gemma 2 9B sizes); its output width is the DiT's text_in_channels
T5GEMMA_9B_ENCODER = dict(vocab_size=256_000, hidden_size=3584, intermediate_size=14_336, num_hidden_layers=42,
                          num_attention_heads=16, num_key_value_heads=8, head_dim=256)
TINY_T5GEMMA_ENCODER = dict(vocab_size=400, hidden_size=TINY_TEXT.width, intermediate_size=2 * TINY_TEXT.width,
                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16)


# -- the stack -------------------------------------------------------------------------------------------------------

@dataclass
class Stack:
    text_encoder: torch.nn.Module     # transformers T5GemmaEncoderModel
    dit: DiTModel
    turbo_vaed: TurboVAED
    audio_vae: AudioVAE
    label: str


def t5gemma_encoder(sizes: dict, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A randomly initialised T5Gemma encoder, constructed on `device` in `dtype` (no CPU copy)."""
    from transformers import T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    config = T5GemmaConfig(encoder=T5GemmaModuleConfig(**sizes), decoder=T5GemmaModuleConfig(**sizes),
                           vocab_size=sizes["vocab_size"], is_encoder_decoder=False)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return T5GemmaEncoderModel(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)


def released_dit(device: torch.device) -> DiTModel:
    """`DiTConfig()` built on the meta device and materialised on `device` with N(0, 0.02) weights."""
    model = build_meta_model(DiTConfig()).to_empty(device=device).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02)
        model.adapter.rope.bands.copy_(model.adapter.rope.default_bands(device))
    return model


def released_stack(device: torch.device) -> Stack:
    with torch.device(device):
        turbo_vaed = TurboVAED(TurboVAEDConfig()).to(torch.bfloat16).eval()
        audio_vae = AudioVAE(OobleckConfig(latent_dim=128), OobleckConfig()).eval()
    return Stack(t5gemma_encoder(T5GEMMA_9B_ENCODER, device, torch.bfloat16), released_dit(device), turbo_vaed,
                 audio_vae, "released sizes, random weights")


def tiny_stack(device: torch.device) -> Stack:
    """The pipeline's tiny random stack (same generator as magihuman-tiny-random), with a tiny T5Gemma encoder."""
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dit = DiTModel(TINY_DIT).eval()
        dit.init_weights_(generator)
        turbo_vaed = randomize_(TurboVAED(TINY_TURBO_VAED), generator)
        audio_vae = randomize_(AudioVAE(TINY_AUDIO_ENCODER, TINY_AUDIO_DECODER), generator)
        text_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        text_encoder = t5gemma_encoder(TINY_T5GEMMA_ENCODER, device, text_dtype)
    vae_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return Stack(text_encoder, dit.to(device), turbo_vaed.to(device, vae_dtype), audio_vae.to(device),
                 "magihuman-tiny-random widths")


# -- timing ----------------------------------------------------------------------------------------------------------

class StageClock:
    """Per stage: wall seconds (device synchronised at both ends), GPU seconds between CUDA events, peak memory."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        self.rows: dict[str, dict[str, float]] = {}

    @contextmanager
    def __call__(self, stage: str):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start_event.record()
        start = time.perf_counter()
        yield
        if self.cuda:
            end_event.record()
            torch.cuda.synchronize()
        row = {"wall_s": time.perf_counter() - start}
        if self.cuda:
            row["gpu_s"] = start_event.elapsed_time(end_event) / 1000
            row["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        self.rows[stage] = row


def text_inputs(stack: Stack, tokens: int, device: torch.device) -> dict[str, torch.Tensor]:
    vocab = stack.text_encoder.config.encoder.vocab_size
    ids = torch.randint(4, vocab, (1, tokens), generator=torch.Generator().manual_seed(0)).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def generate(stack: Stack, velocity_fn, turbo_vaed: TurboVAED, shape: LatentShape, inputs: dict,
             device: torch.device, clock) -> torch.Tensor:
    """One clip, stage by stage as the pipeline runs the distilled T2V preset; returns the final video latent."""
    with clock("text encoding"):
        text = prepare_text_features(stack.text_encoder(**inputs).last_hidden_state)
    with clock("base denoising"):
        latents = generate_latents(velocity_fn, text, None, shape, DISTILL_SAMPLER, seed=42, device=device)
    with clock("video decode"):
        video_frames(turbo_vaed.decode(latents.video))
    with clock("audio decode"):
        stack.audio_vae.decode(latents.audio)
    return latents.video


def count_flops(stack: Stack, shape: LatentShape, inputs: dict, device: torch.device) -> dict[str, int]:
    """FLOPs of each stage, counted on the plain path (the fast paths compute the same products)."""
    flops: dict[str, int] = {}

    @contextmanager
    def counting(stage: str):
        with FlopCounterMode(display=False) as counter:
            yield
        flops[stage] = counter.get_total_flops()

    generate(stack, dit_velocity_fn(stack.dit, "v2"), stack.turbo_vaed, shape, inputs, device, counting)
    return flops


# -- variants --------------------------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    options: FastPathConfig | None      # None: the plain path (model.sampling.dit_velocity_fn)
    skip_reason: str | None = None


def ladder(device: torch.device, attention: str, max_autotune: bool) -> list[Variant]:
    """Plain, then one option added per row (the attention rows try each fused kernel, later rows keep `attention`)."""
    cuda = device.type == "cuda"
    kernels = ("flash", "cudnn", "efficient") if cuda else ("flash",)
    rows = [Variant("plain (today's path)", None), Variant("planned sequence, no host syncs", FastPathConfig())]
    rows += [Variant(f"+ attention={kernel}", FastPathConfig(attention=kernel)) for kernel in kernels]
    best = FastPathConfig(attention=attention)
    rows.append(Variant(f"attention={attention} + compile=default", replace(best, compile="default")))
    top = replace(best, compile="default")
    if max_autotune:
        top = replace(best, compile="max-autotune-no-cudagraphs")
        rows.append(Variant(f"attention={attention} + compile=max-autotune-no-cudagraphs", top))
    rows.append(Variant("+ cuda_graphs", replace(top, cuda_graphs=True), None if cuda else "needs CUDA"))
    top = replace(top, cuda_graphs=cuda)
    rows.append(Variant("+ vae_channels_last", replace(top, vae_channels_last=True)))
    top = replace(top, vae_channels_last=True)
    rows.append(Variant("+ fp8_linears", replace(top, fp8_linears=True), fp8_skip_reason(device)))
    return rows


def fp8_skip_reason(device: torch.device) -> str | None:
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed (pip install 'mheval[fp8]')"
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        return "torchao float8 needs CUDA compute capability >= 8.9"
    return None


def run_variant(stack: Stack, variant: Variant, shape: LatentShape, inputs: dict, device: torch.device,
                repeats: int) -> tuple[dict, torch.Tensor]:
    options = variant.options
    velocity_fn = dit_velocity_fn(stack.dit, "v2") if options is None else FastVelocity(stack.dit, "v2", options)
    turbo_vaed = stack.turbo_vaed
    if options is not None and options.vae_channels_last:
        turbo_vaed = copy.deepcopy(stack.turbo_vaed).to_channels_last()
    first = StageClock(device)
    generate(stack, velocity_fn, turbo_vaed, shape, inputs, device, first)     # warm-up: compile, capture, plans
    runs = []
    for _ in range(repeats):
        clock = StageClock(device)
        latent = generate(stack, velocity_fn, turbo_vaed, shape, inputs, device, clock)
        runs.append(clock.rows)
    stages = {stage: {key: statistics.median(run[stage][key] for run in runs) for key in runs[0][stage]}
              for stage in STAGES}
    return {"first_run_wall_s": sum(row["wall_s"] for row in first.rows.values()), "stages": stages}, latent


# -- parity ----------------------------------------------------------------------------------------------------------

def fast_parity_rows(variants: list[Variant], device: torch.device) -> list[tuple[str, float, float]]:
    """(check, error, tolerance) of the DiT fixtures through each variant's FastVelocity, and of the Turbo-VAED
    fixture in channels-last."""
    from dit_fixture_utils import build_fixture_model, load_fixture, pack_fixture_inputs, rel_err
    from model.packing import unpack
    from model.text_encoder import TextEmbedding
    from model.turbo_vaed import load_turbo_vaed

    rows = []
    seen = set()
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            options = variant.options
            if options is None or variant.skip_reason or options in seen:
                continue
            seen.add(options)
            paths = ((torch.bfloat16, "out_bf16", 0.15 if options.fp8_linears else 2e-2),) + \
                (() if options.fp8_linears else ((torch.float32, "out_fp32", 1e-5),))
            for name in ("dit_tiny", "dit_tiny_local_attn"):
                sidecar, t = load_fixture(name)
                proxy = sidecar["data_proxy"]
                text = TextEmbedding(t["input.text_embeds_padded"].to(device), int(t["input.text_len"]))
                for dtype, reference, tolerance in paths:
                    model = build_fixture_model(name, Path(tmp) / f"{name}-{dtype}-{len(rows)}", dtype).to(device)
                    velocity = FastVelocity(model, proxy["coords_style"], options, patch_size=proxy["patch_size"],
                                            t_patch_size=proxy["t_patch_size"],
                                            frame_receptive_field=proxy["frame_receptive_field"])
                    video, audio = velocity(t["input.latent_video"].to(device), t["input.latent_audio"].to(device),
                                            text)
                    ref_video, ref_audio = unpack(t[f"{reference}.velocity_packed"], pack_fixture_inputs(t, sidecar))
                    error = max(rel_err(video.cpu(), ref_video), rel_err(audio.cpu(), ref_audio))
                    rows.append((f"{variant.name}: {name} {str(dtype).split('.')[-1]}", error, tolerance))
        if any(v.options is not None and v.options.vae_channels_last and not v.skip_reason for v in variants):
            sidecar, t = load_fixture("turbo_vaed_tiny")
            checkpoint = Path(tmp) / "turbo.pt"
            torch.save({"ema_state_dict": {"module." + k.removeprefix("param."): v for k, v in t.items()
                                           if k.startswith("param.")}}, checkpoint)
            for dtype, reference, tolerance in ((torch.float32, "out.decode", 5e-5),
                                                (torch.bfloat16, "out.decode_bf16", 1e-1)):
                vaed = load_turbo_vaed(sidecar["config"], checkpoint, dtype=dtype).to(device).to_channels_last()
                with torch.no_grad():
                    video = vaed.decode(t["input.z"].to(device, dtype)).float().cpu()
                rows.append((f"vae_channels_last: turbo_vaed_tiny {str(dtype).split('.')[-1]}",
                             rel_err(video, t[reference].float()), tolerance))
    return rows


def parity(variants: list[Variant], device: torch.device) -> list[dict]:
    import bench_gpu

    bench_gpu.DEVICE = device
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False   # fp32 references
    try:
        rows = [(f"plain: {check}", error, tolerance) for check, error, tolerance in bench_gpu.parity_rows()]
        rows += fast_parity_rows(variants, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return [{"check": check, "error": error, "tolerance": tolerance, "ok": error <= tolerance}
            for check, error, tolerance in rows]


# -- report ----------------------------------------------------------------------------------------------------------

def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in DENSE_BF16_PEAK_TFLOPS.items() if key in name), None)


def annotate(result: dict, flops: dict[str, int], peak: float | None) -> None:
    """Add FLOPs, TFLOP/s and share of peak per stage, and the totals."""
    for stage, row in result["stages"].items():
        seconds = row.get("gpu_s", row["wall_s"])
        row["flops"] = flops[stage]
        row["tflops"] = flops[stage] / seconds / 1e12 if seconds else None
        row["share_of_peak"] = row["tflops"] / peak if peak and row["tflops"] is not None else None
    result["total_wall_s"] = sum(row["wall_s"] for row in result["stages"].values())
    denoise = result["stages"]["base denoising"]
    result["dit_forward_ms"] = 1000 * denoise.get("gpu_s", denoise["wall_s"]) / DISTILL_SAMPLER.num_steps


def markdown(report: dict) -> str:
    peak = report["peak_dense_bf16_tflops"]
    lines = [f"# bench_e2e: {report['stack']} on {report['device']}", "",
             f"`{report['command']}` — {report['date']}, torch {report['torch']}, "
             f"{report['shape']['seconds']} s at {report['shape']['width']}x{report['shape']['height']} "
             f"({report['shape']['tokens']:,} DiT tokens), distilled preset (8 steps), {report['repeats']} timed runs "
             f"after a warm-up, median; peak {peak or 'unknown'} TFLOP/s dense bf16.", "",
             "| variant | " + " | ".join(STAGES) + " | end to end (wall) | vs paper 2.0 s | DiT forward | "
             "DiT TFLOP/s (share) | first run | final latent vs plain |",
             "|---|" + "---:|" * (len(STAGES) + 6)]
    released = not report["stack"].startswith("magihuman-tiny")   # the paper's 2.0 s is for the released sizes
    for row in report["variants"]:
        if "skipped" in row:
            lines.append(f"| {row['name']} | skipped: {row['skipped']} |" + " |" * (len(STAGES) + 5))
            continue
        cells = []
        for stage in STAGES:
            s = row["stages"][stage]
            cells.append(f"{1000 * s.get('gpu_s', s['wall_s']):.1f} ms" +
                         (f" ({s['peak_gib']:.1f} GiB)" if "peak_gib" in s else ""))
        dit = row["stages"]["base denoising"]
        share = f" ({dit['share_of_peak']:.0%})" if dit["share_of_peak"] is not None else ""
        tflops = f"{dit['tflops']:.3g}{share}" if dit["tflops"] else "-"
        paper = f"{row['total_wall_s'] / PAPER_SECONDS:.2f}x" if released else "-"
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {row['total_wall_s']:.3f} s | {paper} | "
                     f"{row['dit_forward_ms']:.1f} ms | {tflops} | {row['first_run_wall_s']:.1f} s | "
                     f"{row['final_latent_rel_diff_vs_plain']:.1e} |")
    timing = "GPU time between CUDA events" if report["device_type"] == "cuda" else "wall time (no GPU)"
    lines += ["", f"Stage cells: {timing}, peak allocated memory in brackets. Final latent vs plain: max|Δ|/max|"
              "ref| of the video latent after the 8 steps against the plain row's (same seed). FLOPs per stage "
              "(FlopCounterMode, "
              "plain path): " + ", ".join(f"{stage} {flops / 1e12:.4g} TFLOP" for stage, flops in
                                         report["flops"].items()) + ".", "", "| parity check | error | tolerance | |",
              "|---|---:|---:|---|"]
    lines += [f"| {p['check']} | {p['error']:.2e} | {p['tolerance']:.0e} | {'ok' if p['ok'] else 'FAIL'} |"
              for p in report["parity"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny random stack (automatic without CUDA)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--resolution", default="256p", choices=list(RESOLUTIONS))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--text-tokens", type=int, default=256,
                        help="prompt length in encoder tokens (an enhanced prompt of 150-200 words plus dialogue)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attention", default=None, choices=["flash", "cudnn", "efficient"],
                        help="kernel kept after the attention rows (default: cudnn on CUDA, flash on the CPU)")
    parser.add_argument("--max-autotune", action="store_true",
                        help="add compile mode max-autotune-no-cudagraphs (minutes of autotuning on a GPU)")
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this device")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_e2e")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tiny = args.tiny or device.type != "cuda"
    stack = tiny_stack(device) if tiny else released_stack(device)
    width, height = RESOLUTIONS[args.resolution]
    shape = LatentShape.for_request(args.seconds, width, height)
    inputs = text_inputs(stack, args.text_tokens, device)
    attention = args.attention or ("cudnn" if device.type == "cuda" else "flash")
    variants = ladder(device, attention, args.max_autotune)
    print(f"bench_e2e: {stack.label} on {device}, {args.seconds} s {width}x{height}", flush=True)

    flops = count_flops(stack, shape, inputs, device)
    peak = peak_tflops(device, args.peak_tflops)
    results, reference = [], None
    for variant in variants:
        if variant.skip_reason:
            results.append({"name": variant.name, "skipped": variant.skip_reason})
            print(f"{variant.name}: skipped ({variant.skip_reason})", flush=True)
            continue
        result, latent = run_variant(stack, variant, shape, inputs, device, args.repeats)
        annotate(result, flops, peak)
        reference = latent if reference is None else reference
        result["final_latent_rel_diff_vs_plain"] = \
            ((latent - reference).abs().max() / reference.abs().max()).item()
        results.append({"name": variant.name, "options": dataclasses.asdict(variant.options or FastPathConfig()),
                        **result})
        print(f"{variant.name}: end to end {result['total_wall_s']:.3f} s, DiT forward {result['dit_forward_ms']:.1f} "
              f"ms, first run {result['first_run_wall_s']:.1f} s", flush=True)
        if variant.options is not None and variant.options.fp8_linears:
            for module in stack.dit.modules():
                if hasattr(module, "fp8_weights"):
                    module.fp8_weights = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
    parity_rows = [] if args.skip_parity else parity(variants, device)
    report = {
        "command": "python benchmarks/bench_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
        "device_type": device.type, "stack": stack.label, "repeats": args.repeats,
        "shape": {"seconds": args.seconds, "width": width, "height": height,
                  "tokens": shape.video_tokens + shape.audio_frames + min(args.text_tokens, TARGET_LENGTH)},
        "peak_dense_bf16_tflops": peak, "flops": flops, "variants": results, "parity": parity_rows,
        "process_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "e2e.json").write_text(json.dumps(report, indent=2))
    (args.out / "e2e.md").write_text(markdown(report))
    print(markdown(report))
    failed = [p["check"] for p in parity_rows if not p["ok"]]
    if failed:
        print(f"parity FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
