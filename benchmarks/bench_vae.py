"""Video decode speed of the Wan2.2 VAE decoder and Turbo-VAED, on the same latent and random weights.

Two comparisons:

* default: Wan2.2 vs Turbo-VAED at their released channel widths (the paper's reason for Turbo-VAED). The default
  latent has T = 7 = Turbo-VAED's first_chunk_size, so Turbo-VAED decodes one window with no padding, and Wan2.2
  decodes its usual one latent frame at a time.
* `--against REV`: this tree's decoders vs the same files at git revision REV (e.g. before a speed change), same
  weights, same latent, runs interleaved; prints the time ratio and checks the outputs agree. `--widths tiny`
  uses the tiny random stack's widths (model.pipeline), e.g. with the 5-s 448x256 latent `--latent 1 48 32 16 28`.

Weights are fan-in-scaled random normals and really run: the timing is compute, not loading. CPU time (all
threads) is reported beside wall time because it is the steadier figure on a shared machine.

    python benchmarks/bench_vae.py [--latent 1 48 7 4 4] [--repeats 2] [--threads 2]
    python benchmarks/bench_vae.py --against 64c785d --widths tiny --latent 1 48 32 16 28 --repeats 3
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from model import turbo_vaed, wan_vae
from model.pipeline import TINY_TURBO_VAED, TINY_WAN_VAE

REPO = Path(__file__).resolve().parents[1]


def random_init(model: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Materialise a meta-device model with weights ~ N(0, 1/fan_in), zero biases, unit norm gains."""
    model = model.to_empty(device="cpu")
    for name, param in model.named_parameters():
        with torch.no_grad():
            if name.endswith("gamma"):
                param.fill_(1.0)
            elif param.dim() == 1:
                param.zero_()
            else:
                param.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
    return model.eval()


def time_decodes(decoders: dict, latent: torch.Tensor, repeats: int) -> tuple[dict[str, list[tuple[float, float]]], dict]:
    """(wall, CPU) seconds of `repeats` decodes per decoder, and each decoder's output. Runs are interleaved so
    that load from other processes hits every decoder alike. A one-voxel decode first warms each decoder up."""
    for decode in decoders.values():
        decode(latent[:, :, :1, :1, :1])
    times, outputs = {name: [] for name in decoders}, {}
    for _ in range(repeats):
        for name, decode in decoders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = decode(latent)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times, outputs


def medians(times: dict[str, list[tuple[float, float]]]) -> tuple[dict[str, float], dict[str, float]]:
    return ({name: statistics.median(t[0] for t in ts) for name, ts in times.items()},
            {name: statistics.median(t[1] for t in ts) for name, ts in times.items()})


def modules_at(revision: str, directory: Path):
    """model/turbo_vaed.py and model/wan_vae.py as they were at `revision`, imported under other names (their
    `from model...` imports resolve to this tree, whose helpers they share)."""
    loaded = []
    for name in ("turbo_vaed", "wan_vae"):
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:model/{name}.py"], check=True,
                                capture_output=True, text=True).stdout
        path = directory / f"{name}_at_{revision}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(module)
    return loaded


def compare_revisions(args, latent: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(0)
    turbo_cfg = TINY_TURBO_VAED if args.widths == "tiny" else turbo_vaed.TurboVAEDConfig()
    wan_cfg = TINY_WAN_VAE if args.widths == "tiny" else wan_vae.WanVAEConfig()
    with tempfile.TemporaryDirectory() as tmp:
        old_turbo, old_wan = modules_at(args.against, Path(tmp))
        with torch.device("meta"):
            turbo = turbo_vaed.TurboVAED(turbo_cfg)
            wan = wan_vae.WanVAE(wan_cfg)
        turbo, wan = random_init(turbo, generator), random_init(wan, generator)
        turbo_then = old_turbo.TurboVAED(old_turbo.TurboVAEDConfig(**vars(turbo_cfg))).eval()
        wan_then = old_wan.WanVAE(old_wan.WanVAEConfig(**vars(wan_cfg))).eval()
        turbo_then.load_state_dict(turbo.state_dict())
        wan_then.load_state_dict(wan.state_dict())
        decoders = {f"Turbo-VAED @ {args.against}": turbo_then.decode, "Turbo-VAED now": turbo.decode}
        if not args.turbo_only:
            decoders |= {f"Wan2.2 @ {args.against}": wan_then.decode, "Wan2.2 now": wan.decode}
        times, outputs = time_decodes(decoders, latent, args.repeats)
    wall, cpu = medians(times)
    print(f"{args.widths} widths, latent {tuple(latent.shape)}, fp32 CPU, {args.threads} threads, median of "
          f"{args.repeats} interleaved runs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'decoder':<28}{'wall s':>9}{'CPU s':>9}")
    for name in decoders:
        print(f"{name:<28}{wall[name]:>9.2f}{cpu[name]:>9.2f}")
    for model in ("Turbo-VAED", "Wan2.2"):
        then, now = f"{model} @ {args.against}", f"{model} now"
        if now in outputs:
            difference = ((outputs[now] - outputs[then]).abs().max() / outputs[then].abs().max()).item()
            print(f"{model}: now / then = {wall[now] / wall[then]:.2f} (wall), {cpu[now] / cpu[then]:.2f} (CPU); "
                  f"outputs differ by {difference:.1e} of their range")


def compare_decoders(args, latent: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        wan, turbo = wan_vae.WanVAE(wan_vae.WanVAEConfig()), turbo_vaed.TurboVAED(turbo_vaed.TurboVAEDConfig())
    wan, turbo = random_init(wan, generator), random_init(turbo, generator)
    n_wan = sum(p.numel() for p in wan.decoder.parameters()) + wan.conv2.weight.numel() + wan.conv2.bias.numel()
    n_turbo = sum(p.numel() for p in turbo.parameters())

    times, outputs = time_decodes({"Wan2.2 VAE": wan.decode, "Turbo-VAED": turbo.decode}, latent, args.repeats)
    shapes = {tuple(video.shape) for video in outputs.values()}
    assert len(shapes) == 1, shapes
    wall, cpu = medians(times)
    print(f"latent {tuple(latent.shape)} -> video {shapes.pop()}; fp32 CPU, {args.threads} threads, median of "
          f"{args.repeats} interleaved runs")
    print(f"{'decoder':<12}{'params':>10}{'wall s':>10}{'CPU s':>10}")
    for name, n_params in (("Wan2.2 VAE", n_wan), ("Turbo-VAED", n_turbo)):
        print(f"{name:<12}{n_params / 1e6:>9.1f}M{wall[name]:>10.2f}{cpu[name]:>10.2f}")
    for label, t in (("wall", wall), ("CPU", cpu)):
        print(f"speed-up Turbo-VAED vs Wan2.2 ({label} time): {t['Wan2.2 VAE'] / t['Turbo-VAED']:.2f}x (target >= 4x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, nargs=5, default=[1, 48, 7, 4, 4], metavar=("B", "C", "T", "H", "W"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--against", metavar="REV", help="compare with the decoders at this git revision")
    parser.add_argument("--widths", choices=("released", "tiny"), default="released",
                        help="with --against: released widths, or the tiny random stack's")
    parser.add_argument("--turbo-only", action="store_true", help="with --against: skip the Wan2.2 decoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    latent = torch.randn(*args.latent, generator=torch.Generator().manual_seed(1))
    if args.against:
        compare_revisions(args, latent)
    else:
        compare_decoders(args, latent)


if __name__ == "__main__":
    sys.exit(main())
