"""Video decode speed: Wan2.2 VAE decoder vs Turbo-VAED at their released channel widths, same latent.

Both models are randomly initialised (fan-in-scaled normal weights) and really run: the timing is compute, not
loading. The default latent has T = 7 = Turbo-VAED's first_chunk_size, so Turbo-VAED decodes one window with
no padding, and Wan2.2 decodes its usual one latent frame at a time.

    python benchmarks/bench_vae.py [--latent 1 48 7 4 4] [--repeats 2] [--threads 2]
"""

import argparse
import statistics
import time

import torch

from model.turbo_vaed import TurboVAED, TurboVAEDConfig
from model.wan_vae import WanVAE, WanVAEConfig


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
    """(wall, CPU) seconds of `repeats` decodes per decoder, and each decoder's output shape. Runs are
    interleaved so that load from other processes hits every decoder alike; CPU time (all threads) is the
    contention-robust measure. A one-voxel decode first warms each decoder up."""
    for decode in decoders.values():
        decode(latent[:, :, :1, :1, :1])
    times, shapes = {name: [] for name in decoders}, {}
    for _ in range(repeats):
        for name, decode in decoders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            shapes[name] = tuple(decode(latent).shape)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times, shapes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, nargs=5, default=[1, 48, 7, 4, 4], metavar=("B", "C", "T", "H", "W"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(*args.latent, generator=generator)
    with torch.device("meta"):
        wan, turbo = WanVAE(WanVAEConfig()), TurboVAED(TurboVAEDConfig())
    wan, turbo = random_init(wan, generator), random_init(turbo, generator)
    n_wan = sum(p.numel() for p in wan.decoder.parameters()) + wan.conv2.weight.numel() + wan.conv2.bias.numel()
    n_turbo = sum(p.numel() for p in turbo.parameters())

    times, shapes = time_decodes({"Wan2.2 VAE": wan.decode, "Turbo-VAED": turbo.decode}, latent, args.repeats)
    assert len(set(shapes.values())) == 1, shapes
    wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}

    print(f"latent {tuple(latent.shape)} -> video {shapes['Wan2.2 VAE']}; fp32 CPU, {args.threads} threads, median of {args.repeats} interleaved runs")
    print(f"{'decoder':<12}{'params':>10}{'wall s':>10}{'CPU s':>10}")
    for name, n_params in (("Wan2.2 VAE", n_wan), ("Turbo-VAED", n_turbo)):
        print(f"{name:<12}{n_params / 1e6:>9.1f}M{wall[name]:>10.2f}{cpu[name]:>10.2f}")
    for label, t in (("wall", wall), ("CPU", cpu)):
        print(f"speed-up Turbo-VAED vs Wan2.2 ({label} time): {t['Wan2.2 VAE'] / t['Turbo-VAED']:.2f}x (target >= 4x)")


if __name__ == "__main__":
    main()
