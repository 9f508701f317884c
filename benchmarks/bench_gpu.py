"""What only a GPU shows: `model/` on CUDA against the parity fixtures, the released DiT's real memory against
`model.sizing`'s estimate, and the speed of a full-width DiT forward and Turbo-VAED decode.

    python benchmarks/bench_gpu.py [--skip-parity] [--skip-dit] [--skip-decode] [--resolutions 256p,540p,1080p]
    python benchmarks/bench_gpu.py --device cpu --skip-dit --skip-decode --skip-pipeline   # dry run of the parity part

Needs a CUDA device. Parity: each fixture's modules are moved to CUDA and run in fp32 (reference: the fixtures'
fp32 outputs, CPU tolerances) and in bf16 (reference: the fixtures' bf16 outputs, the bf16 tolerances the CPU
tests use). Memory: the released DiT configuration (15.3 B parameters, block linears bf16) with random weights
made on the GPU, one forward on a packed clip of each resolution (5 s), peak `torch.cuda.max_memory_allocated`
above the weights compared with `model.sizing.memory_estimate`'s activation term. Speed: median of timed forwards
after a warm-up (CUDA-synchronised), and the Turbo-VAED decode of a 5-s latent at each resolution. Pipeline: the
tiny-random stack end to end on the device (the DiT in its CUDA arithmetic, bf16), text-to-video and audio-conditioned
(a2v, a 3-s tone as the reference audio), with each stage's time — every stage runs on CUDA, not only the kernels.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from bench_dit import bench_inputs, forward_flops  # noqa: E402
from model.dit import DiTConfig, DiTModel  # noqa: E402
from model.sizing import RESOLUTIONS, build_meta_model, memory_estimate, sequence_for  # noqa: E402

GIB = 1024**3
DEVICE = torch.device("cuda")  # --device cpu dry-runs the parity checks


def timed(fn, repeats: int) -> float:
    """Median CUDA-synchronised wall seconds of `repeats` calls after one warm-up."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def to_device(packed):
    return tuple(t.to(DEVICE) if isinstance(t, torch.Tensor) else t for t in packed.model_inputs())


# -- parity ----------------------------------------------------------------------------------------------------------

def parity_rows() -> list[tuple[str, float, float]]:
    """(check, error, tolerance) for every fixture path run on the device, with TF32 as the caller set it."""
    from dit_fixture_utils import DIT_FIXTURES, build_fixture_model, pack_fixture_inputs
    from parity_fixture import load_fixture, rel_err

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in DIT_FIXTURES:
            sidecar, t = load_fixture(name)
            inputs = to_device(pack_fixture_inputs(t, sidecar))
            for dtype, reference, tolerance in ((torch.float32, "out_fp32", 1e-5), (torch.bfloat16, "out_bf16", 2e-2)):
                model = build_fixture_model(name, Path(tmp) / f"{name}-{dtype}", compute_dtype=dtype).to(DEVICE)
                velocity = model(*inputs).cpu()
                rows.append((f"{name} {str(dtype).split('.')[-1]}", rel_err(velocity, t[f"{reference}.velocity_packed"]),
                             tolerance))

        from model.turbo_vaed import load_turbo_vaed
        sidecar, t = load_fixture("turbo_vaed_tiny")
        checkpoint = Path(tmp) / "turbo.pt"
        torch.save({"ema_state_dict": {"module." + k.removeprefix("param."): v for k, v in t.items()
                                       if k.startswith("param.")}}, checkpoint)
        for dtype, reference, tolerance in ((torch.float32, "out.decode", 5e-5), (torch.bfloat16, "out.decode_bf16", 1e-1)):
            vaed = load_turbo_vaed(sidecar["config"], checkpoint, dtype=dtype).to(DEVICE)
            with torch.no_grad():
                video = vaed.decode(t["input.z"].to(DEVICE, dtype)).float().cpu()
            rows.append((f"turbo_vaed_tiny decode {str(dtype).split('.')[-1]}", rel_err(video, t[reference].float()),
                         tolerance))

        from safetensors.torch import save_file

        from model.wan_vae import WanVAEConfig, load_wan_vae
        sidecar, t = load_fixture("wan22_vae_tiny")
        checkpoint = Path(tmp) / "wan.safetensors"
        save_file({k.removeprefix("param."): v for k, v in t.items() if k.startswith("param.")}, str(checkpoint))
        vae = load_wan_vae(checkpoint, WanVAEConfig.from_dict(sidecar["config"])).to(DEVICE)
        with torch.no_grad():
            rows.append(("wan22_vae_tiny encode fp32", rel_err(vae.encode(t["input.video"].to(DEVICE)).cpu(),
                                                               t["out.encode_video"]), 5e-5))
            rows.append(("wan22_vae_tiny decode fp32", rel_err(vae.decode_raw(t["out.encode_video"].to(DEVICE)).cpu(),
                                                               t["out.decode_raw"]), 5e-5))
        vae = load_wan_vae(checkpoint, WanVAEConfig.from_dict(sidecar["config"]), dtype=torch.bfloat16).to(DEVICE)
        with torch.no_grad():
            rows.append(("wan22_vae_tiny encode bf16", rel_err(vae.encode(t["input.image"].to(DEVICE)).float().cpu(),
                                                               t["out.encode_image_bf16"].float()), 5e-2))

        import json

        from model.audio_vae import load_audio_vae
        sidecar, t = load_fixture("sa_audio_vae_tiny")
        directory = Path(tmp) / "sao"
        directory.mkdir()
        (directory / "model_config.json").write_text(json.dumps(sidecar["config"]))
        save_file({"pretransform.model." + k.removeprefix("param."): v for k, v in t.items() if k.startswith("param.")},
                  str(directory / "model.safetensors"))
        audio_vae = load_audio_vae(directory).to(DEVICE)
        stereo = t["input.waveform_mono"][None].repeat(2, 1)
        with torch.no_grad():
            rows.append(("sa_audio_vae_tiny encoder fp32", rel_err(audio_vae.encoder(stereo[None].to(DEVICE)).cpu(),
                                                                   t["out.encode_pre_bottleneck"]), 5e-5))
            waveform = audio_vae.decode_latent(t["input.latent_audio"].squeeze(0).T.to(DEVICE))
            rows.append(("sa_audio_vae_tiny decode fp32", rel_err(torch.as_tensor(waveform).float().cpu(),
                                                                  t["out.decode"]), 5e-5))
    return rows


# -- the released DiT: memory and speed ------------------------------------------------------------------------------

def released_dit_on_gpu() -> DiTModel:
    """The released configuration with N(0, 0.02) weights drawn on the GPU (no checkpoint exists here)."""
    model = build_meta_model(DiTConfig()).to_empty(device=DEVICE).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02)
        model.adapter.rope.bands.copy_(model.adapter.rope.default_bands(DEVICE))
    return model


def dit_rows(resolutions: list[str], repeats: int) -> list[str]:
    model = released_dit_on_gpu()
    torch.cuda.synchronize()
    weights_allocated = torch.cuda.memory_allocated()
    meta = build_meta_model(DiTConfig())
    lines = [f"released DiT on {torch.cuda.get_device_name()}: {sum(p.numel() for p in model.parameters()):,} "
             f"parameters, {weights_allocated / GIB:.2f} GiB allocated for weights"]
    for name in resolutions:
        width, height = RESOLUTIONS[name]
        packed = bench_inputs(5, width, height, text_channels=model.cfg.text_in_channels)
        inputs = to_device(packed)
        estimate = memory_estimate(model.cfg, meta, sequence_for(width, height, 5))
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model(*inputs)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        seconds = timed(lambda: model(*inputs), repeats)
        flops = forward_flops(model.cfg, packed)
        lines.append(
            f"{name} ({width}x{height}, 5 s, {len(packed.x):,} tokens): peak {peak / GIB:.2f} GiB "
            f"(activations {(peak - weights_allocated) / GIB:.2f} GiB measured vs {estimate['activations']:.2f} "
            f"estimated, ratio {(peak - weights_allocated) / GIB / estimate['activations']:.2f}; total estimate "
            f"{estimate['total']:.2f} GiB); forward {seconds * 1000:.0f} ms = {flops / seconds / 1e12:.0f} TFLOP/s")
    del model
    torch.cuda.empty_cache()
    return lines


def decode_rows(resolutions: list[str], repeats: int) -> list[str]:
    from model.turbo_vaed import TurboVAED, TurboVAEDConfig

    lines = [f"before decode: {torch.cuda.memory_allocated() / GIB:.2f} GiB allocated"]
    for dtype in (torch.bfloat16, torch.float32):
        vaed = TurboVAED(TurboVAEDConfig()).to(DEVICE, dtype).eval()
        with torch.no_grad():
            for param in vaed.parameters():
                param.normal_(0.0, 0.02)
        for name in resolutions:
            width, height = RESOLUTIONS[name]
            latent = torch.randn(1, vaed.cfg.latent_channels, 32, height // 16, width // 16, device=DEVICE, dtype=dtype)
            torch.cuda.reset_peak_memory_stats()
            label = f"Turbo-VAED decode {name} 5 s ({str(dtype).split('.')[-1]})"
            try:
                with torch.no_grad():
                    seconds = timed(lambda: vaed.decode(latent), repeats)
            except torch.OutOfMemoryError:
                lines.append(f"{label}: out of memory ({torch.cuda.get_device_properties(0).total_memory / GIB:.0f} "
                             f"GiB device)")
                del latent
                torch.cuda.empty_cache()
                continue
            lines.append(f"{label}: {seconds:.2f} s, peak {torch.cuda.max_memory_allocated() / GIB:.1f} GiB")
            del latent
            torch.cuda.empty_cache()
        del vaed
        torch.cuda.empty_cache()
    return lines


def pipeline_rows(out: Path) -> list[str]:
    import numpy as np
    import scipy.io.wavfile

    from model.pipeline import MagiHumanPipeline

    pipeline = MagiHumanPipeline.tiny_random(device=str(DEVICE))
    tone = out / "tone.wav"
    rate = 16_000
    scipy.io.wavfile.write(tone, rate, (0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * rate) / rate)).astype(np.float32))
    lines = []
    for mode, audio in (("T2V", None), ("a2v", tone)):
        pipeline.generate("A woman speaks.", seconds=3, width=448, height=256, seed=0, audio=audio,
                          out=out / f"{mode}.mp4")   # warm-up: CUDA context, kernels
        result = pipeline.generate("A woman speaks.", seconds=3, width=448, height=256, seed=0, audio=audio,
                                   out=out / f"{mode}.mp4")
        stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in result.timings.items())
        lines.append(f"tiny-random pipeline on {DEVICE.type} ({mode}, 3 s, 448x256): {result.frames.shape[0]} frames, "
                     f"audio {len(result.audio) / result.sample_rate:.2f} s; stages (s): {stages}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--skip-dit", action="store_true")
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--resolutions", default="256p,540p,1080p")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device", file=sys.stderr)
        return 2
    resolutions = args.resolutions.split(",")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if DEVICE.type == 'cuda' else 'CPU'}")
    failed = False
    if not args.skip_parity:
        # cuDNN convolutions default to TF32 on Ampere and later (matmuls do not): fp32 parity needs it off; the
        # default's error is printed too, since that is what a user's fp32 VAE decode on CUDA gets.
        rows = []
        if DEVICE.type == "cuda":
            rows += [(f"{check} [TF32 default]", error, tolerance) for check, error, tolerance in parity_rows()
                     if "float32" in check or "fp32" in check]
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        rows += parity_rows()
        torch.backends.cudnn.allow_tf32 = True
        for check, error, tolerance in rows:
            verdict = "ok" if error <= tolerance else "over" if "TF32 default" in check else "FAIL"
            failed |= verdict == "FAIL"
            print(f"parity on {DEVICE.type}: {check:<36} err {error:.2e} (tolerance {tolerance:.0e}) {verdict}",
                  flush=True)
    if not args.skip_dit:
        for line in dit_rows(resolutions, args.repeats):
            print(line, flush=True)
    if not args.skip_decode:
        for line in decode_rows(resolutions, args.repeats):
            print(line, flush=True)
    if not args.skip_pipeline:
        with tempfile.TemporaryDirectory() as tmp:
            for line in pipeline_rows(Path(tmp)):
                print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
