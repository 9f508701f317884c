"""Wan2.2 decode with the context-parallel width split (spec 5.1): 2 gloo processes on CPU give the single-process
video, on the `wan22_vae_tiny` fixture's weights."""
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


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        vae = fixture_vae()
        videos = {name: vae.decode(latent, group=dist.group.WORLD) for name, latent in latents().items()}
        save_file(videos, os.path.join(out_dir, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def parallel_videos(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("wan_cp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(out_dir)), nprocs=WORLD)
    return [load_file(out_dir / f"rank{rank}.safetensors") for rank in range(WORLD)]


@pytest.mark.parametrize("name", list(latents()))
def test_two_processes_decode_what_one_does(parallel_videos, name):
    single = fixture_vae().decode(latents()[name])
    for videos in parallel_videos:
        assert videos[name].shape == single.shape
        assert rel_err(videos[name], single) <= FP32_TOL   # slices convolve with other kernels: rounding only
    if name == "fixture":
        assert rel_err(parallel_videos[0][name], load_fixture("wan22_vae_tiny")[1]["out.decode"]) <= FP32_TOL
