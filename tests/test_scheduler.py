"""Flow-matching UniPC, the distilled DDIM-style step and the SR re-noise against the `scheduler` fixture."""

import re

import pytest
import torch

from model.scheduler import (FlowUniPCScheduler, ddim_step, flow_schedule, renoise_for_sr, sr_audio_input,
                             training_sigmas, upsample_video_latent, zero_snr_ddpm_sigmas)
from parity_fixture import load_fixture, rel_err

SIDECAR, REF = load_fixture("scheduler")
SHIFT = float(re.search(r"shift=([0-9.]+)", SIDECAR["set_timesteps"]).group(1))


def run_names(prefix: str) -> list[str]:
    return sorted({name.split(".")[0] for name in REF if name.startswith(prefix)})


def test_training_grid():
    assert (training_sigmas() - REF["train.sigmas"]).abs().max() <= 1e-7


@pytest.mark.parametrize("run", run_names("schedule_"))
def test_schedule(run):
    sigmas, timesteps = flow_schedule(REF[f"{run}.timesteps"].numel(), SHIFT)
    assert sigmas.dtype == torch.float32 and timesteps.dtype == torch.int64
    assert torch.equal(timesteps, REF[f"{run}.timesteps"])
    assert (sigmas - REF[f"{run}.sigmas"]).abs().max() <= 1e-7


@pytest.mark.parametrize("run", run_names("unipc_"))
def test_unipc_trajectory(run):
    velocities, samples = REF[f"{run}.model_outputs"], REF[f"{run}.samples"]
    num_steps = velocities.shape[0]
    scheduler = FlowUniPCScheduler(num_steps, SHIFT)
    x, orders = samples[0], []
    for i in range(num_steps):
        x = scheduler.step(velocities[i], x)
        orders.append(scheduler.last_order)
        assert rel_err(x, samples[i + 1]) <= 1e-5, f"step {i}"
    assert orders == SIDECAR["unipc_runs"]["predictor_orders_used"][run.removeprefix("unipc_")]


def test_ddim_trajectory_and_noise_order():
    run = SIDECAR["ddim_run"]
    sigmas, _ = flow_schedule(REF["ddim_8.video_velocities"].shape[0], SHIFT)
    generator = torch.Generator().manual_seed(run["seed"] + 1)
    latents = {kind: REF[f"ddim_8.{kind}_samples"][0] for kind in ("video", "audio")}
    for i in range(len(sigmas) - 1):
        for kind in ("video", "audio"):   # the pipeline steps video first, then audio
            noise = torch.randn(latents[kind].shape, generator=generator)
            assert torch.equal(noise, REF[f"ddim_8.{kind}_noises"][i])
            latents[kind] = ddim_step(REF[f"ddim_8.{kind}_velocities"][i], latents[kind],
                                      sigmas[i], sigmas[i + 1], noise)
            assert rel_err(latents[kind], REF[f"ddim_8.{kind}_samples"][i + 1]) <= 1e-5, f"{kind} step {i}"


def test_zero_snr_table():
    table = zero_snr_ddpm_sigmas()
    assert (table - REF["zsnr.sigmas"]).abs().max() <= 1e-6
    noise_value = SIDECAR["sr"]["noise_value"]
    assert abs(table[noise_value] - REF["zsnr.sigma_at_noise_value"][0]) <= 1e-6
    assert abs((1 - table[noise_value] ** 2) ** 0.5 - SIDECAR["sr"]["noise_coefficient"]) <= 1e-6


def test_sr_latent_preparation():
    height, width = SIDECAR["sr"]["sr_latent_hw"]
    upsampled = upsample_video_latent(REF["sr.base_latent"], height, width)
    assert rel_err(upsampled, REF["sr.upsampled"]) <= 1e-6
    renoised = renoise_for_sr(REF["sr.upsampled"], REF["sr.noise"], SIDECAR["sr"]["noise_value"])
    assert rel_err(renoised, REF["sr.renoised"]) <= 1e-6
    assert rel_err(sr_audio_input(REF["sr.audio_clean"], REF["sr.audio_noise"]), REF["sr.audio_mix"]) <= 1e-6
