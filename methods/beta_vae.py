"""β-VAE and β-TCVAE: the disentanglement track's VAE baselines (one module, an `objective` switch).

    python -m bench run --suite quick --dataset sprites --method beta_vae --variant quick --seed 0
    python -m bench run --suite paper --dataset shapes3d --method beta_vae --variant paper --seed 0

Spec: docs/methods/dyga.md ("Baselines for the same track: β-VAE (and β-TCVAE if time
allows) with the usual conv encoder/decoder for 64×64"). Settings follow disentanglement_lib
(Locatello et al., ICML 2019), `config/unsupervised_study_v1/model_configs/shared.gin` and
`sweep.py`: 10 latents, batch 64, Adam (lr 1e-4, beta1 0.9, beta2 0.999, eps 1e-8), 300,000
steps, Bernoulli likelihood; the study sweeps beta over 1, 2, 4, 6, 8, 16 (β-VAE) and
1, 2, 4, 6, 8, 10 (β-TCVAE) with no single published choice.

Objectives, per example and averaged over the batch (z ~ q(z|x) = N(mu, diag sigma^2)):

    beta    (Higgins et al. 2017)  recon + beta * KL(q(z|x) || N(0, I))
    tcvae   (Chen et al. 2018)     recon + KL + (beta - 1) * TC      (disentanglement_lib's form,
            Chen et al.'s decomposition with alpha = gamma = 1)

recon = binary cross-entropy of the decoder's logits against the grey levels in [0, 1] (not
binarised), summed over pixels. TC = total correlation of q(z), estimated on the batch by
minibatch-weighted sampling: log q(z_j) ~ logsumexp_i log q(z_j | x_i) - log(N M) (N the dataset
size, M the batch size), and likewise per latent dimension; TC = mean_j [log q(z_j) - sum_l
log q(z_jl)]. disentanglement_lib drops the constant (D - 1) log(N M); we keep it, so the
logged TC is the estimate itself (the gradient is the same).

Networks (disentanglement_lib's conv_encoder / deconv_decoder, after the β-VAE paper's Table 1):
encoder 4 convs 4x4 stride 2 (32, 32, 64, 64 channels, ReLU), FC 256 (ReLU), linear heads to
the mean and log-variance of `latent` units; decoder FC 256, FC 64 x (side/16)^2 (ReLU), 3
transposed convs 4x4 stride 2 (64, 32, 32, ReLU) and one to the image's channels (logits).
Any square side divisible by 16 works: 64x64 (the paper datasets, 4x4 at the bottleneck) and
32x32 (our sprites, 2x2).

Outputs about the score split: embedding = the encoder means (the representation the
disentanglement metrics read); samples = `n_samples` images decoded (sigmoid of the logits)
from z ~ N(0, I), uint8; traversals = for one image of the score split (drawn with the run's
seed), each latent unit of its mean swept over `traversal_steps` values evenly spaced in
[-traversal_range, traversal_range], the others held, decoded: uint8 (latent, steps, C, H, W).

Determinism: weights initialised under a forked torch RNG seeded with run.seed; every draw of
training and sampling (batch order, reparameterisation, prior samples) from one torch.Generator
seeded with run.seed; a checkpoint every `checkpoint_every` epochs (model, optimiser, epoch,
generator), so a resumed run gives the numbers of an uninterrupted one (bit-identical on CPU).

Deviations and readings:
- The training budget is `steps` optimiser steps, run as whole epochs (a fresh permutation
  each, the last incomplete batch dropped): ceil(steps / (N // batch_size)) epochs, so up to
  one epoch more than `steps` (e.g. 300,030 steps on Cars3D, 307,800 on MPI3D-toy).
- disentanglement_lib's encoder uses 2x2 kernels in its third and fourth convs (its code, not
  the β-VAE paper's table); we use 4x4 throughout, as the table and Burgess et al. do.
- TC keeps its constant (see above); the β-TCVAE regulariser is disentanglement_lib's
  KL + (beta - 1) TC rather than Chen et al.'s fully estimated MI + beta TC + dim-KL.
- The `paper` variants take beta = 4 (β-VAE) and beta = 6 (β-TCVAE) from the middle of the
  study's sweeps: the DyGA paper's baseline rows do not say which beta they used (unknown here).
- The quick and smoke variants (sprites, 32x32, fewer steps, larger learning rate) are ours.
- Under precision bf16 (where native: CUDA, or a CPU with AMX or AVX512-BF16) the networks'
  training passes compute in bf16, channels-last; losses, KL terms, the total correlation and
  every read-out are fp32 (ours; methods/nets/precision.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from methods.base import Method, RunContext, RunData, Training
from methods.vae import check_batch, check_positive, in_chunks, train_epochs

OBJECTIVES = ("beta", "tcvae")
LOG_COLUMNS = ("loss", "recon", "kl", "tc")
LOG_2PI = math.log(2 * math.pi)


# Networks -----------------------------------------------------------------------------------

def conv_encoder(channels: int, side: int, latent: int) -> nn.Sequential:
    """Image (C, side, side) -> mean and log-variance of `latent` units, concatenated."""
    widths = (channels, 32, 32, 64, 64)
    convs = [layer for a, b in zip(widths, widths[1:]) for layer in (nn.Conv2d(a, b, 4, 2, 1), nn.ReLU())]
    return nn.Sequential(*convs, nn.Flatten(), nn.Linear(64 * (side // 16) ** 2, 256), nn.ReLU(),
                         nn.Linear(256, 2 * latent))


def deconv_decoder(channels: int, side: int, latent: int) -> nn.Sequential:
    """`latent` units -> Bernoulli logits of the image (C, side, side)."""
    bottom = side // 16
    widths = (64, 64, 32, 32)
    deconvs = [layer for a, b in zip(widths, widths[1:]) for layer in (nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU())]
    return nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 64 * bottom ** 2), nn.ReLU(),
                         nn.Unflatten(1, (64, bottom, bottom)), *deconvs, nn.ConvTranspose2d(32, channels, 4, 2, 1))


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z | mu, exp logvar) elementwise."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 / logvar.exp())


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, n_data: int) -> torch.Tensor:
    """Minibatch-weighted-sampling estimate of TC(q(z)) on a batch (M, D), with its constant."""
    m = len(z)
    log_q = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))   # (j, i, l)
    log_norm = math.log(n_data * m)
    log_qz = torch.logsumexp(log_q.sum(2), dim=1) - log_norm
    log_qz_product = (torch.logsumexp(log_q, dim=1) - log_norm).sum(1)
    return (log_qz - log_qz_product).mean()


class BetaVAE(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent: int):
        super().__init__()
        channels, side, _ = shape
        self.latent = latent
        self.encoder = conv_encoder(channels, side, latent)
        self.decoder = deconv_decoder(channels, side, latent)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x).chunk(2, -1)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def terms(self, x: torch.Tensor, config: dict, n_data: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator, device=mu.device)
        recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").flatten(1).sum(1).mean()
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1).mean()
        if config["objective"] == "beta":
            return {"loss": recon + config["beta"] * kl, "recon": recon, "kl": kl}
        tc = total_correlation(z, mu, logvar, n_data)
        return {"loss": recon + kl + (config["beta"] - 1) * tc, "recon": recon, "kl": kl, "tc": tc}


# The method -----------------------------------------------------------------------------------

def check_config(config: dict, data: RunData) -> None:
    """Every bad setting, named with the valid choices, before anything is built."""
    if config["objective"] not in OBJECTIVES:
        raise ValueError(f"beta_vae: unknown objective '{config['objective']}'; valid: {', '.join(OBJECTIVES)}")
    check_positive("beta_vae", config, ("latent", "batch_size", "steps", "checkpoint_every", "n_samples", "traversal_steps"))
    if config["beta"] < 0 or config["lr"] <= 0 or config["traversal_range"] <= 0:
        raise ValueError("beta_vae: beta must be at least 0, lr and traversal_range positive")
    shape = tuple(data.fit.x.shape[1:])
    if data.dataset.kind != "images" or len(shape) != 3 or shape[1] != shape[2] or shape[1] % 16:
        raise ValueError(f"beta_vae: the conv networks need square images with a side divisible by 16 "
                         f"(64x64, 32x32); dataset '{data.dataset.name}' has x of shape {shape}")
    check_batch("beta_vae", "batch_size", config["batch_size"], len(data.fit))


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return np.rint(images.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)


class BetaVAEMethod(Method):
    name = "beta_vae"
    tracks = ("disentanglement", "generation")
    budget = "steps"

    def training_images(self, config: dict, n: int) -> int:
        per_epoch = n // config["batch_size"]
        return math.ceil(config["steps"] / per_epoch) * per_epoch * config["batch_size"]

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_config(config, data)
        device = run.device
        # uint8 on the device (a quarter of float32: MPI3D-toy is a million images), scaled per batch
        fit_x = torch.from_numpy(np.array(data.fit.x)).to(device)          # a copy: prepared arrays are read-only maps
        score_x = fit_x if data.score is data.fit else torch.from_numpy(np.array(data.score.x)).to(device)
        shape, n = tuple(fit_x.shape[1:]), len(fit_x)
        epochs = math.ceil(config["steps"] / (n // config["batch_size"]))

        training = Training.start(run, lambda: BetaVAE(shape, config["latent"]), config["lr"])
        model, generator = training.model, training.generator
        model.train()
        train_epochs(run, "beta_vae",
                     lambda index: model.terms(fit_x[index].float() / 255, config, n, generator),
                     training.optimiser, generator, n, config["batch_size"], range(training.epoch + 1, epochs + 1),
                     lambda epoch: training.save(run, epoch), config["checkpoint_every"],
                     LOG_COLUMNS if config["objective"] == "tcvae" else LOG_COLUMNS[:3])

        model.eval()
        embedding = in_chunks(lambda x: model.mean(x.float() / 255), score_x)
        prior = torch.randn((config["n_samples"], config["latent"]), generator=generator, device=device)
        return {"embedding": embedding.cpu().numpy().astype(np.float32),
                "samples": as_uint8(in_chunks(model.decode, prior).view(-1, *shape)),
                "traversals": as_uint8(self.traverse(model, score_x, config, run))}

    @staticmethod
    @torch.no_grad()
    def traverse(model: BetaVAE, images: torch.Tensor, config: dict, run: RunContext) -> torch.Tensor:
        """(latent, steps, C, H, W) in [0, 1]: each unit of one image's mean swept, the others held."""
        index = int(run.rng(1).integers(len(images)))
        mean = model.mean(images[index:index + 1].float() / 255)[0]
        values = torch.linspace(-config["traversal_range"], config["traversal_range"], config["traversal_steps"],
                                device=mean.device)
        codes = mean.repeat(model.latent, config["traversal_steps"], 1)                  # (latent, steps, latent)
        units = torch.arange(model.latent, device=mean.device)
        codes[units, :, units] = values
        decoded = model.decode(codes.view(-1, model.latent))
        return decoded.view(model.latent, config["traversal_steps"], *images.shape[1:])
