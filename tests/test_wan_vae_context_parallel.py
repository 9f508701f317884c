"""Wan2.2 decode with the context-parallel width split (spec 5.1): 2 processes give the single-process video, on
the `wan22_vae_tiny` fixture's weights. gloo on the CPU always; NCCL on two GPUs where a machine has them (fp32,
TF32 off, so that the comparison is at fp32 tolerance)."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from model.wan_vae import WanVAE, WanVAEConfig
from parity_fixture import load_fixture, rel_err

WORLD = 2
FP32_TOL = 5e-5   # the fixture README's fp32 tolerance for this VAE


def fixture_vae() -> WanVAE:
    sidecar, tensors = load_fixture("wan22_vae_tiny")
    vae = WanVAE(WanVAEConfig.from_dict(sidecar["config"]))
    vae.load_state_dict({k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")})
    return vae.eval()


def latents() -> dict[str, torch.Tensor]:
    """The fixture's encoded video (latent width 3: the halo reaches past the image edge on both ranks) and a
    wider random latent of odd width 7 (uneven slices of 4 and 3 columns)."""
    _, tensors = load_fixture("wan22_vae_tiny")
    return {"fixture": tensors["out.encode_video"],
            "odd_width": torch.randn(1, 48, 2, 2, 7, generator=torch.Generator().manual_seed(0))}


BACKENDS = [pytest.param("gloo", id="gloo-cpu"),
            pytest.param("nccl", id="nccl-cuda", marks=pytest.mark.skipif(
                torch.cuda.device_count() < WORLD, reason=f"needs {WORLD} GPUs"))]


def device_for(backend: str, rank: int) -> torch.device:
    return torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")


def decode(latent: torch.Tensor, device: torch.device, group=None) -> torch.Tensor:
    torch.backends.cudnn.allow_tf32 = False
    return fixture_vae().to(device).decode(latent.to(device), group=group).cpu()


def _worker(rank, backend, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    device = device_for(backend, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=WORLD)
    try:
        videos = {name: decode(latent, device, dist.group.WORLD) for name, latent in latents().items()}
        save_file(videos, os.path.join(out_dir, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=BACKENDS)
def parallel_videos(request, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("wan_cp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(request.param, port, str(out_dir)), nprocs=WORLD)
    return request.param, [load_file(out_dir / f"rank{rank}.safetensors") for rank in range(WORLD)]


@pytest.mark.parametrize("name", list(latents()))
def test_two_processes_decode_what_one_does(parallel_videos, name):
    backend, per_rank = parallel_videos
    single = decode(latents()[name], device_for(backend, 0))
    for videos in per_rank:
        assert videos[name].shape == single.shape
        assert rel_err(videos[name], single) <= FP32_TOL   # slices convolve with other kernels: rounding only
    if name == "fixture":
        assert rel_err(per_rank[0][name], load_fixture("wan22_vae_tiny")[1]["out.decode"]) <= FP32_TOL
