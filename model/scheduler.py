"""Samplers of the daVinci-MagiHuman generator (spec sections 4.1, 4.2, 4.5).

Rectified flow: x_σ = (1−σ)·x₀ + σ·ε and the DiT predicts the velocity v ≈ ε − x₀, so x₀ = x_σ − σ·v.
The DiT never sees σ; the schedulers below only turn velocities into the next latent.

* `flow_schedule` / `FlowUniPCScheduler`: the original's flow-matching UniPC (predict-x₀, bh2, order 2,
  lower_order_final, final σ = 0), used by the base model with CFG and by every SR step.
* `ddim_step`: the distilled model's step, which re-noises x₀ to the next σ with fresh noise.
* `zero_snr_ddpm_sigmas`, `upsample_video_latent`, `renoise_for_sr`, `sr_audio_input`: the SR-stage latent
  preparation (a variance-preserving re-noise at DDPM step 220 of a zero-terminal-SNR table).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_SHIFT = 5.0          # EvaluationConfig.shift, passed to every set_timesteps call

SR_NOISE_VALUE = 220         # DDPM step whose noise level the SR input is re-noised to
SR_AUDIO_NOISE_SCALE = 0.7   # SR audio input = 0.7·ε + 0.3·clean audio


# ---------------------------------------------------------------------------------------------------------------
# Flow-matching schedule


def training_sigmas(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The constructor's grid σ = 1 − reverse(linspace(1, 1/N, N)): 0.999 … 0.0, float32 [N]."""
    alphas = np.linspace(1.0, 1.0 / num_train_timesteps, num_train_timesteps)[::-1]
    return torch.from_numpy((1.0 - alphas).copy()).to(torch.float32)


def shift_sigmas(sigmas, shift: float):
    """Time shift σ ← shift·σ / (1 + (shift−1)·σ); larger shift spends more steps at high noise."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_schedule(num_steps: int, shift: float = DEFAULT_SHIFT,
                  num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """`set_timesteps(num_steps, shift)`: σ float32 [num_steps+1] ending in 0, and timesteps int64 [num_steps].

    The grid runs from σ_max to σ_min of the (unshifted) training grid in float64; timesteps are σ·1000
    truncated, computed before the σ are rounded to float32.
    """
    train = training_sigmas(num_train_timesteps)
    sigma_max, sigma_min = train[0].item(), train[-1].item()
    sigmas = shift_sigmas(np.linspace(sigma_max, sigma_min, num_steps + 1)[:-1], shift)
    timesteps = torch.from_numpy(sigmas * num_train_timesteps).to(torch.int64)
    sigmas = torch.from_numpy(np.append(sigmas, 0.0).astype(np.float32))
    return sigmas, timesteps


# ---------------------------------------------------------------------------------------------------------------
# UniPC (bh2) for flow prediction


def _log_snr(sigma: float) -> float:
    """λ = ln α − ln σ with α = 1 − σ; +∞ at σ = 0."""
    return math.inf if sigma == 0.0 else math.log(1.0 - sigma) - math.log(sigma)


class FlowUniPCScheduler:
    """Multistep UniPC predictor-corrector in x₀ form (bh2 variant, solver order 2, lower order at the end).

    One instance per latent and per sampling run; `step` must be called once per timestep, in order.
    Step i:
      1. m_i = x − σ_i·v (x₀ prediction from the un-corrected sample);
      2. for i > 0, the UniC corrector refines x using m_i and the previous predictor's inputs;
      3. the UniP predictor moves the corrected x to σ_{i+1}, with order 1 at i = 0 and at the last step.
    """

    solver_order = 2

    def __init__(self, num_steps: int, shift: float = DEFAULT_SHIFT):
        self.sigmas, self.timesteps = flow_schedule(num_steps, shift)
        self.num_steps = num_steps
        self.step_index = 0
        self._x0_history: list[torch.Tensor] = []   # m_{i−1}, m_i (most recent last)
        self._last_sample: torch.Tensor | None = None  # the sample the last predictor started from
        self.last_order = 0                            # order of the last predictor step

    def _sigma(self, index: int) -> float:
        return self.sigmas[index].item()

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        i = self.step_index
        x0 = sample - self.sigmas[i] * velocity
        if i > 0:
            sample = self._correct(x0, sample)
        self._x0_history = (self._x0_history + [x0])[-self.solver_order:]
        order = min(self.solver_order, self.num_steps - i, len(self._x0_history))
        self._last_sample, self.last_order = sample, order
        self.step_index += 1
        return self._predict(sample, order)

    def _predict(self, sample: torch.Tensor, order: int) -> torch.Tensor:
        """UniP: x_{i+1} = (σ_{i+1}/σ_i)·x − α_{i+1}·(e^{−h}−1)·m_i − α_{i+1}·B_h·½·D (D only for order 2)."""
        i = self.step_index - 1
        sigma_s, sigma_t = self._sigma(i), self._sigma(i + 1)
        h = _log_snr(sigma_t) - _log_snr(sigma_s)
        h_phi_1 = math.expm1(-h)
        m0 = self._x0_history[-1]
        x_next = (sigma_t / sigma_s) * sample - ((1.0 - sigma_t) * h_phi_1) * m0
        if order == 2:
            r = (_log_snr(self._sigma(i - 1)) - _log_snr(sigma_s)) / h
            d = (self._x0_history[-2] - m0) / r
            x_next = x_next - ((1.0 - sigma_t) * h_phi_1 * 0.5) * d   # bh2: B_h = e^{−h} − 1 = h_phi_1
        return x_next

    def _correct(self, x0: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """UniC: redo the previous step from `_last_sample` using the new x₀ prediction m_i as an extra node."""
        i = self.step_index
        sigma_s, sigma_t = self._sigma(i - 1), self._sigma(i)
        h = _log_snr(sigma_t) - _log_snr(sigma_s)
        hh = -h
        h_phi_1 = math.expm1(hh)
        b_h = h_phi_1
        m_prev = self._x0_history[-1]
        x_corr = (sigma_t / sigma_s) * self._last_sample - ((1.0 - sigma_t) * h_phi_1) * m_prev
        if self.last_order == 1:
            return x_corr - ((1.0 - sigma_t) * b_h * 0.5) * (x0 - m_prev)
        # Order 2: ρ solves [[1, 1], [r, 1]]·ρ = b with b_k = k!·φ_k(hh)/B_h.
        r = (_log_snr(self._sigma(i - 2)) - _log_snr(sigma_s)) / h
        phi_1 = h_phi_1 / hh - 1.0
        phi_2 = phi_1 / hh - 0.5
        b1, b2 = phi_1 / b_h, 2.0 * phi_2 / b_h
        rho_0 = (b1 - b2) / (1.0 - r)
        rho_1 = b1 - rho_0
        d = (self._x0_history[-2] - m_prev) / r
        return x_corr - ((1.0 - sigma_t) * b_h) * (rho_0 * d + rho_1 * (x0 - m_prev))


# ---------------------------------------------------------------------------------------------------------------
# Distilled step


def ddim_step(velocity: torch.Tensor, sample: torch.Tensor, sigma: float, sigma_next: float,
              noise: torch.Tensor) -> torch.Tensor:
    """x ← σ_{i+1}·ε + (1 − σ_{i+1})·(x − σ_i·v): jump to x₀, then re-noise to the next level with fresh ε."""
    x0 = sample - sigma * velocity
    return sigma_next * noise + (1 - sigma_next) * x0


# ---------------------------------------------------------------------------------------------------------------
# Super-resolution latent preparation


def zero_snr_ddpm_sigmas(num_timesteps: int = NUM_TRAIN_TIMESTEPS, linear_start: float = 0.00085,
                         linear_end: float = 0.012) -> torch.Tensor:
    """√ᾱ of the linear-β DDPM schedule rescaled to zero terminal SNR, float32 [N], index = DDPM step.

    S[0] ≈ 0.99957 (least noise), S[N−1] = 0. This is `ZeroSNRDDPMDiscretization()(N, do_append_zero=False,
    flip=True)`.
    """
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas.numpy())
    signal = torch.tensor(alphas_cumprod, dtype=torch.float32).sqrt()
    first, last = signal[0].clone(), signal[-1].clone()
    return (signal - last) * (first / (first - last))


def upsample_video_latent(latent: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[1,C,T,h,w] → [1,C,T,height,width], trilinear with align_corners=True; time is unchanged."""
    return F.interpolate(latent, size=(latent.shape[2], height, width), mode="trilinear", align_corners=True)


def renoise_for_sr(latent: torch.Tensor, noise: torch.Tensor, noise_value: int = SR_NOISE_VALUE) -> torch.Tensor:
    """Variance-preserving re-noise z·s + ε·√(1−s²) with s = S[noise_value] (0.838910 for 220)."""
    s = zero_snr_ddpm_sigmas()[noise_value]
    return latent * s + noise * (1 - s ** 2) ** 0.5


def sr_audio_input(audio: torch.Tensor, noise: torch.Tensor,
                   noise_scale: float = SR_AUDIO_NOISE_SCALE) -> torch.Tensor:
    """The fixed audio tokens the SR model sees: noise_scale·ε + (1 − noise_scale)·clean audio."""
    return noise * noise_scale + audio * (1 - noise_scale)
