"""Denoising diffusion pieces shared by the diffusion methods: the noise schedule, the forward
(noising) process, ancestral (DDPM) and DDIM sampling with classifier-free guidance, and an
exponential moving average of weights.

Conventions: timesteps are integers t = 0 .. T-1 (t = 0 the least noisy); a denoiser is any
callable `eps(x_t, t) -> predicted noise` with t a LongTensor of shape (B,), so a method
wraps its network (and its conditioning) in a closure. Every random draw takes the caller's
torch.Generator: same generator state, same samples.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NoiseSchedule:
    """beta_t, alpha_t = 1 - beta_t and alpha_bar_t = prod_{s<=t} alpha_s for t = 0 .. T-1,
    computed in float64 and handed out in float32 on the schedule's device."""

    def __init__(self, betas: torch.Tensor):
        betas = betas.double()
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("noise schedule: betas must be a 1-d tensor of values in (0, 1)")
        self.betas = betas
        self.alpha_bar = torch.cumprod(1 - betas, 0)

    @property
    def steps(self) -> int:
        return len(self.betas)

    @classmethod
    def linear(cls, steps: int, beta_start: float, beta_end: float) -> NoiseSchedule:
        """beta linear in t (DDPM)."""
        return cls(torch.linspace(beta_start, beta_end, steps, dtype=torch.float64))

    @classmethod
    def sqrt_linear(cls, steps: int, beta_start: float, beta_end: float) -> NoiseSchedule:
        """sqrt(beta) linear in t: what latent diffusion's code calls the "linear" schedule."""
        return cls(torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2)

    @classmethod
    def named(cls, name: str, steps: int, beta_start: float, beta_end: float) -> NoiseSchedule:
        makers = {"linear": cls.linear, "sqrt_linear": cls.sqrt_linear}
        if name not in makers:
            raise ValueError(f"unknown noise schedule '{name}'; valid: {', '.join(makers)}")
        return makers[name](steps, beta_start, beta_end)

    def check_ends_in_noise(self, who: str, most: float = 0.05) -> None:
        """Samplers start from x_T ~ N(0, I): refuse a schedule whose x_T keeps more than `most`
        of the signal's variance (alpha_bar_T), which would make every sample start off-model."""
        left = self.alpha_bar[-1].item()
        if left > most:
            raise ValueError(f"{who}: with {self.steps} steps the schedule keeps alpha_bar_T = {left:.3f} of the "
                             f"signal (at most {most} for x_T to be noise); use more steps or a larger beta_end")

    def at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] as float32 on like's device, shaped to broadcast over a batch like `like`."""
        picked = values.to(like.device)[t].float()
        return picked.view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
        a = self.at(self.alpha_bar, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def random_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.steps, (n,), generator=generator, device=generator.device)


def guided(conditional: Denoiser, unconditional: Denoiser, weight: float) -> Denoiser:
    """Classifier-free guidance: (1 + w) eps(x_t, c) - w eps(x_t, null); w = 0 is plain conditional."""
    if weight == 0:
        return conditional
    return lambda x, t: (1 + weight) * conditional(x, t) - weight * unconditional(x, t)


@torch.no_grad()
def ancestral_sample(eps: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...],
                     generator: torch.Generator) -> torch.Tensor:
    """DDPM ancestral sampling over all T steps from x_T ~ N(0, I), with the posterior variance
    taken as beta_t (DDPM's sigma_t^2 = beta_t choice); no noise is added at the last step."""
    device = generator.device
    x = torch.randn(shape, generator=generator, device=device)
    for step in reversed(range(schedule.steps)):
        t = torch.full((shape[0],), step, dtype=torch.long, device=device)
        beta, alpha_bar = schedule.at(schedule.betas, t, x), schedule.at(schedule.alpha_bar, t, x)
        mean = (x - beta / (1 - alpha_bar).sqrt() * eps(x, t)) / (1 - beta).sqrt()
        x = mean + beta.sqrt() * torch.randn(shape, generator=generator, device=device) if step > 0 else mean
    return x


@torch.no_grad()
def ddim_sample(eps: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], generator: torch.Generator,
                steps: int = 100, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al.) over `steps` timesteps evenly spaced in [0, T-1]; eta = 0 is
    deterministic given x_T, eta = 1 has DDPM's variance."""
    if not 1 <= steps <= schedule.steps:
        raise ValueError(f"ddim: steps must be in 1..{schedule.steps}, got {steps}")
    device = generator.device
    times = torch.linspace(schedule.steps - 1, 0, steps, dtype=torch.float64).round().long().unique_consecutive()
    x = torch.randn(shape, generator=generator, device=device)
    for i, step in enumerate(times.tolist()):
        t = torch.full((shape[0],), step, dtype=torch.long, device=device)
        alpha_bar = schedule.at(schedule.alpha_bar, t, x)
        prev = (schedule.at(schedule.alpha_bar, torch.full_like(t, int(times[i + 1])), x)
                if i + 1 < len(times) else torch.ones_like(alpha_bar))
        noise = eps(x, t)
        x0 = (x - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
        sigma = eta * ((1 - prev) / (1 - alpha_bar) * (1 - alpha_bar / prev)).sqrt()
        x = prev.sqrt() * x0 + (1 - prev - sigma ** 2).clamp(min=0).sqrt() * noise
        if eta > 0 and i + 1 < len(times):
            x = x + sigma * torch.randn(shape, generator=generator, device=device)
    return x


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers, with
    latent diffusion's warm-up: decay_n = min(decay, (1 + n) / (10 + n)) at update n."""

    def __init__(self, model: nn.Module, decay: float = 0.9999):
        if not 0 <= decay < 1:
            raise ValueError(f"ema: decay must be in [0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            if key in self.shadow:
                self.shadow[key].lerp_(value.detach(), 1 - decay)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow, strict=False)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
