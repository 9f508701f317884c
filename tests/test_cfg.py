"""The guided sampling loop with the DiT replaced by fixed velocities, against the `cfg` fixture."""

import pytest
import torch

from model.sampling import GuidanceConfig, denoise
from model.text_encoder import TextEmbedding
from parity_fixture import load_fixture, rel_err

SIDECAR, REF = load_fixture("cfg")
PROMPT = TextEmbedding(torch.zeros(1, 4, 8), 3)
NEGATIVE = TextEmbedding(torch.zeros(1, 4, 8), 2)


class FixedVelocities:
    """Stands in for the DiT: step i returns the fixture's cond or uncond velocities, chosen by the text."""

    def __init__(self, run: str):
        self.run, self.step, self.cond_inputs = run, -1, []

    def __call__(self, video, audio, text):
        if text is PROMPT:
            self.step += 1
            self.cond_inputs.append((video, audio))
            return REF[f"{self.run}.cond_v"][self.step], REF[f"{self.run}.cond_a"][self.step]
        assert text is NEGATIVE
        return REF[f"{self.run}.unc_v"][self.step], REF[f"{self.run}.unc_a"][self.step]


@pytest.mark.parametrize("run", sorted(SIDECAR["runs"]))
def test_guided_loop(run):
    settings = SIDECAR["runs"][run]
    sr = settings["use_sr_model"]
    model, states = FixedVelocities(run), []
    video, audio = denoise(
        model, REF[f"{run}.start_video"], REF[f"{run}.start_audio"], PROMPT, NEGATIVE,
        num_steps=settings["steps"], cfg_number=settings["sr_cfg_number" if sr else "cfg_number"],
        super_resolution=sr, guidance=GuidanceConfig(audio_scale=settings["audio_scale"]),
        image_latent=REF.get(f"{run}.image_latent"), on_step=states.append)

    assert [s.timestep for s in states] == REF[f"{run}.timesteps"].tolist()
    for i, state in enumerate(states):
        assert torch.equal(model.cond_inputs[i][0], state.video)
        assert rel_err(state.video, REF[f"{run}.in_v"][i]) <= 1e-5, f"video input, step {i}"
        assert rel_err(state.audio, REF[f"{run}.in_a"][i]) <= 1e-5, f"audio input, step {i}"
        assert rel_err(state.video_velocity, REF[f"{run}.cfg_v"][i]) <= 1e-6, f"video cfg, step {i}"
        assert rel_err(state.audio_velocity, REF[f"{run}.cfg_a"][i]) <= 1e-6, f"audio cfg, step {i}"
    assert rel_err(video, REF[f"{run}.final_video"]) <= 1e-5
    assert rel_err(audio, REF[f"{run}.final_audio"]) <= 1e-5


def test_sr_keeps_audio_and_image_frame():
    model = FixedVelocities("sr")
    image = REF["sr.image_latent"]
    video, audio = denoise(model, REF["sr.start_video"], REF["sr.start_audio"], PROMPT, NEGATIVE,
                           num_steps=SIDECAR["runs"]["sr"]["steps"], cfg_number=2, super_resolution=True,
                           image_latent=image)
    assert torch.equal(audio, REF["sr.start_audio"])
    assert torch.equal(video[:, :, :1], image)
    assert all(torch.equal(v[:, :, :1], image) for v, _ in model.cond_inputs)

