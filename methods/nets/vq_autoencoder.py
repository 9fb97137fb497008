"""The VQ first stage of the paper suite's latent diffusion (EncDiff / DyGA): 64x64x3 images to
16x16x3 latents and back, LDM-style (Rombach et al. 2022; taming-transformers' VQGAN parts).

    .venv/bin/python -m pytest tests/test_vq_autoencoder.py -q -p no:cacheprovider

Spec: docs/methods/dyga.md ("First stage: a VQ autoencoder maps 64x64x3 images to 16x16x3
latents (2048 codes, ch 32, ch_mult [1,2,4], 2 res blocks, no attention; latent rescaled by
1/std of the first batch)"). Facts also read from the authors' `configs/autoencoder/shapes3d.yaml`
(youngjun-jun/dis-dis): embed_dim 3, n_embed 2048, z_channels 3, dropout 0, codebook_weight 1,
base_learning_rate 4.5e-6, batch 128, 2 accumulated batches, an LPIPS + patch-GAN loss
(disc_weight 0.75, disc_start 0).

Learning rate: LDM's main.py (its `--scale_lr`, on by default for the first stage) trains at
base_learning_rate x accumulated batches x GPUs x batch: 4.5e-6 x 2 x 1 x 128 = 1.152e-3 on one
GPU. `learning_rate(stage)` computes the same from `base_lr`, `accumulate` and `batch_size` (one
GPU); each optimiser step takes `accumulate` x `batch_size` images at once, which gives the
accumulated gradient exactly (LDM's accumulation averages the batches' losses, and this network
has no batch statistics: GroupNorm only).

Networks (channels c = `channels`, mults m = `channel_mult`, r = `res_blocks`):
- res block: GroupNorm, SiLU, conv 3x3, GroupNorm, SiLU, conv 3x3, plus the input (through a
  1x1 conv where the width changes); GroupNorm has 32 groups (eps 1e-6), or gcd(32, width)
  for the narrow networks of the tests;
- encoder: conv 3x3 3 -> c; per level i: r res blocks to c m_i, then (not after the last level)
  a stride-2 conv 3x3 after padding right and bottom by one; middle: res block, [attention],
  res block; GroupNorm, SiLU, conv 3x3 to `latent_channels`; then a 1x1 conv (LDM's quant_conv);
- decoder: the 1x1 conv back (post_quant_conv), conv 3x3 to c m_last; middle as above; per level
  from the last: r + 1 res blocks, then (not after level 0) nearest 2x upsampling and conv 3x3;
  GroupNorm, SiLU, conv 3x3 to 3 channels;
- [attention] is LDM's single-head spatial self-attention block (GroupNorm, q/k/v 1x1 convs,
  1x1 projection, residual). `mid_attention: true` keeps it: LDM's Encoder and Decoder always
  hold it in the middle; the spec's "no attention" (attn_resolutions: []) removes only the
  per-level ones. `false` gives the network with no attention at all.
- codebook: `codes` vectors of `latent_channels` dimensions, initialised uniform in +-1/codes;
  nearest-code quantisation with the straight-through gradient; codebook loss
  |sg(h) - e|^2 + commitment |h - sg(e)|^2 (means over elements), commitment = 0.25.

Interface: `encode(x)` gives the pre-quantisation latent h (after quant_conv), which is what
LDM's diffusion is trained on (scaled by the scale factor); `decode(h)` quantises first, then
decodes. Images are floats in [-1, 1] (uint8 / 127.5 - 1), as in LDM. `train_vq_autoencoder`
trains one on uint8 images and sets `scale_factor` = 1 / std of the latents (all elements) of
one batch of `batch_size` images drawn by the run's generator after training, standing in for
LDM's "first batch of the diffusion stage" (`latent_scale_factor` computes it for any batch).

Deviations, each stated:
- Loss: mean |x - x_hat| (L1) + codebook loss, no LPIPS perceptual term and no discriminator
  (the paper uses LDM's VQLPIPSWithDiscriminator); reconstructions are therefore blurrier.
- Commitment weight on |h - sg(e)|^2, as in the VQ-VAE paper and the spec; LDM's
  VectorQuantizer2 defaults to `legacy=True`, which puts beta on the codebook term instead.
- Accumulated batches run as one batch (the same gradient, more memory; see above); Adam with
  LDM's autoencoder betas (0.5, 0.9).
- Every random draw (weight initialisation, batch order, the scale-factor batch) from the
  run's seed: a torch.Generator seeded from `run.rng(GENERATOR_STREAM)`, so the stage's stream
  is independent of the method's own generator seeded with run.seed.

Checkpoints: standalone, `train_vq_autoencoder` resumes from and writes the run's checkpoint
(model, optimiser, generator, epoch); inside a method with its own checkpoint, pass this
stage's saved `state` and a `save(state)` that nests it in the method's checkpoint.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from methods.base import RunContext
from methods.nets.precision import attention, full_precision
from methods.vae import check_batch, train_epochs

GENERATOR_STREAM = 17                 # run.rng stream that seeds this stage's torch generator
ADAM_BETAS = (0.5, 0.9)               # LDM's autoencoder optimiser
KEYS = ("codes", "channels", "channel_mult", "res_blocks", "latent_channels", "mid_attention", "commitment",
        "base_lr", "accumulate", "batch_size", "epochs", "checkpoint_every")
LOG_COLUMNS = ("loss", "l1", "codebook", "codes_used")


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, 1, 1),
                                  group_norm(out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, 1, 1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class SelfAttention(nn.Module):
    """LDM's AttnBlock: single-head attention over the spatial positions, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)   # (B, HW, C) each
        attended = attention(q, k, v)
        return x + self.out(attended.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def middle(channels: int, attention: bool) -> list[nn.Module]:
    return [ResBlock(channels, channels), *([SelfAttention(channels)] if attention else []), ResBlock(channels, channels)]


def encoder(config: dict) -> nn.Sequential:
    widths = [config["channels"] * m for m in config["channel_mult"]]
    layers, width = [nn.Conv2d(3, config["channels"], 3, 1, 1)], config["channels"]
    for level, out in enumerate(widths):
        for _ in range(config["res_blocks"]):
            layers.append(ResBlock(width, out))
            width = out
        if level < len(widths) - 1:
            layers.append(Downsample(width))
    layers += middle(width, config["mid_attention"])
    layers += [group_norm(width), nn.SiLU(), nn.Conv2d(width, config["latent_channels"], 3, 1, 1),
               nn.Conv2d(config["latent_channels"], config["latent_channels"], 1)]            # quant_conv
    return nn.Sequential(*layers)


def decoder(config: dict) -> nn.Sequential:
    widths = [config["channels"] * m for m in config["channel_mult"]]
    width = widths[-1]
    layers = [nn.Conv2d(config["latent_channels"], config["latent_channels"], 1),             # post_quant_conv
              nn.Conv2d(config["latent_channels"], width, 3, 1, 1), *middle(width, config["mid_attention"])]
    for level in reversed(range(len(widths))):
        for _ in range(config["res_blocks"] + 1):
            layers.append(ResBlock(width, widths[level]))
            width = widths[level]
        if level > 0:
            layers.append(Upsample(width))
    layers += [group_norm(width), nn.SiLU(), nn.Conv2d(width, 3, 3, 1, 1)]
    return nn.Sequential(*layers)


class Codebook(nn.Module):
    def __init__(self, codes: int, dim: int, commitment: float):
        super().__init__()
        self.commitment = commitment
        self.embedding = nn.Embedding(codes, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codes, 1.0 / codes)

    @full_precision                     # the nearest code by distance, and its loss, in fp32
    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quantised h with the straight-through gradient, codebook loss, code indices (B, H, W))."""
        b, c, height, width = h.shape
        flat = h.permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.embedding.weight
        distance = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.T + codes.pow(2).sum(1)
        index = distance.argmin(1)
        quantised = self.embedding(index).view(b, height, width, c).permute(0, 3, 1, 2)
        loss = F.mse_loss(quantised, h.detach()) + self.commitment * F.mse_loss(h, quantised.detach())
        return h + (quantised - h).detach(), loss, index.view(b, height, width)


class VQAutoencoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.encoder = encoder(config)
        self.codebook = Codebook(config["codes"], config["latent_channels"], config["commitment"])
        self.decoder = decoder(config)
        self.register_buffer("scale_factor", torch.tensor(1.0))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> pre-quantisation latents (B, latent_channels, H/f, W/f)."""
        return self.encoder(x)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents (unscaled) -> images in about [-1, 1]; quantised first."""
        return self.decoder(self.codebook(latent)[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, codebook loss, code indices)."""
        quantised, loss, index = self.codebook(self.encode(x))
        return self.decoder(quantised), loss, index


# Training ------------------------------------------------------------------------------------

def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [-1, 1]."""
    return images.float() / 127.5 - 1


def settings(config: dict, prefix: str) -> dict:
    """The stage's settings `prefix + key` of a method's config, checked before anything is built."""
    missing = [prefix + key for key in KEYS if prefix + key not in config]
    if missing:
        raise ValueError(f"vq autoencoder: the config lacks {', '.join(missing)}")
    stage = {key: config[prefix + key] for key in KEYS}
    for key in ("codes", "channels", "res_blocks", "latent_channels", "accumulate", "batch_size", "epochs",
                "checkpoint_every"):
        if stage[key] < 1:
            raise ValueError(f"vq autoencoder: {prefix}{key} must be at least 1, got {stage[key]}")
    if not stage["channel_mult"] or min(stage["channel_mult"]) < 1:
        raise ValueError(f"vq autoencoder: {prefix}channel_mult must be a non-empty list of positive integers")
    if stage["base_lr"] <= 0 or stage["commitment"] < 0:
        raise ValueError(f"vq autoencoder: {prefix}base_lr must be positive and {prefix}commitment at least 0")
    return stage


def learning_rate(stage: dict) -> float:
    """LDM main.py's scaled rate on one GPU: base rate x accumulated batches x batch size."""
    return stage["base_lr"] * stage["accumulate"] * stage["batch_size"]


@torch.no_grad()
def reconstruction_error(model: VQAutoencoder, images: torch.Tensor, chunk: int = 256) -> dict[str, float]:
    """Mean |x - x_hat| over uint8 images (in [-1, 1] units), beside that of the images' own mean
    image (what a first stage that learned nothing would reach), and their ratio."""
    model.eval()
    device = model.scale_factor.device
    total = mean = 0.0
    average = sum(to_unit_range(part.to(device)).sum(0) for part in images.split(chunk)) / len(images)
    for part in images.split(chunk):
        x = to_unit_range(part.to(device))
        total += float((model(x)[0] - x).abs().sum())
        mean += float((average - x).abs().sum())
    return {"l1": total / images[0].numel() / len(images), "mean_image_l1": mean / images[0].numel() / len(images),
            "ratio": total / mean}


@torch.no_grad()
def latent_scale_factor(model: VQAutoencoder, images: torch.Tensor) -> float:
    """1 / std of the latents of one batch of uint8 images (all elements), as LDM's scale_by_std."""
    return float(1.0 / model.encode(to_unit_range(images)).flatten().std())


def train_vq_autoencoder(images: np.ndarray | torch.Tensor, config: dict, run: RunContext, prefix: str = "vq_",
                         state: dict | None = None, save: Callable[[dict], None] | None = None) -> VQAutoencoder:
    """Train on uint8 images (N, 3, H, W) with the settings `prefix + key` of `config` (see
    KEYS); returns the model in eval mode with its scale_factor set. Standalone (save None) it
    resumes from and writes the run's checkpoint; otherwise it resumes from `state` (this
    stage's last saved state, or None) and calls `save(state)` every checkpoint_every epochs."""
    stage = settings(config, prefix)
    if not isinstance(images, torch.Tensor):     # shares a memory-mapped array (read only, never written)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            images = torch.from_numpy(np.asarray(images))
    levels = len(stage["channel_mult"]) - 1
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"vq autoencoder: needs uint8 images N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")
    if images.shape[2] % 2 ** levels or images.shape[3] % 2 ** levels:
        raise ValueError(f"vq autoencoder: image sides {tuple(images.shape[2:])} are not divisible by {2 ** levels}")
    step_batch = stage["accumulate"] * stage["batch_size"]
    check_batch("vq autoencoder", f"{prefix}accumulate x {prefix}batch_size", step_batch, len(images))
    device = run.device
    images = images.to(device)
    seed = int(run.rng(GENERATOR_STREAM).integers(2 ** 62))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = run.network(VQAutoencoder(stage), channels_last=False)   # slower under bf16 (encdiff.CHANNELS_LAST)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate(stage), betas=ADAM_BETAS)
    generator = torch.Generator(device=device).manual_seed(seed)
    if save is None:
        state, save = run.load_checkpoint(), run.save_checkpoint
    done = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        done = state["epoch"]

    def terms(index: torch.Tensor) -> dict[str, torch.Tensor]:
        x = to_unit_range(images[index])
        reconstruction, codebook_loss, codes = model(x)
        l1 = (reconstruction - x).abs().mean()
        used = torch.tensor(float(codes.unique().numel()), device=x.device)
        return {"loss": l1 + codebook_loss, "l1": l1, "codebook": codebook_loss, "codes_used": used}

    def checkpoint(epoch: int) -> None:
        save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
              "generator": generator.get_state(), "epoch": epoch})

    model.train()
    train_epochs(run, prefix + "autoencoder", terms, optimiser, generator, len(images), step_batch,
                 range(done + 1, stage["epochs"] + 1), checkpoint, stage["checkpoint_every"], LOG_COLUMNS)
    model.eval()
    first = torch.randperm(len(images), generator=generator, device=generator.device)[:stage["batch_size"]]
    model.scale_factor.fill_(latent_scale_factor(model, images[first.to(device)]))
    return model
