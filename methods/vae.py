"""A plain VAE with a standard normal prior: the diffusion-map VAE's comparison row.

    python -m bench run --suite quick --dataset circle --method vae --variant quick --seed 0
    python -m bench run --suite paper --dataset mnist --method vae --variant paper-mnist --seed 0

Spec: docs/methods/vdae.md ("Comparison rows: a plain VAE with a standard normal prior on
the same data"). The spec gives no architecture; this one mirrors the VDAE's (methods/vdae.py)
so that the two rows differ in the latent space only: encoder MLP (`hidden` ReLU units) to the
mean and log-variance of q(z|x) = N(mu, diag sigma^2), z of dimension `d`; decoder MLP
(`hidden` ReLU units) to the input dimension. Likelihood: Gaussian with a fixed standard
deviation `sigma` on the features (points as they are, pixels scaled to [0, 1]):
loss = |x - decoder(z)|^2 / (2 sigma^2) + KL(q(z|x) || N(0, I)), per example, batch mean.
Adam, `lr`.

Outputs about the score split: embedding = mu(x); decoded = decoder(mu(x)) (same rows; the
topology track's bi-Lipschitz constant); samples = decoder(z), z ~ N(0, I), `n_samples` of
them (0: as many as the score split has points), float32 N x D for points, uint8 N x C x H x W
for images (clipped to [0, 1], times 255, rounded); for labelled data, assignments and probs
from a Gaussian mixture (full covariances, as many components as classes, k-means
initialisation) fitted on the latent means: our clustering protocol, not a paper's.

Determinism: weights initialised under a forked torch RNG seeded with run.seed; every draw of
training and sampling from one torch.Generator seeded with run.seed; a checkpoint every
`checkpoint_every` epochs holds model, optimiser, epoch and the generator's state, so a
resumed run gives the numbers of an uninterrupted one (bit-identical on CPU).

Every setting is ours (the spec gives none): its variants carry the names of the VDAE's, with
the same latent dimension, width, splits and number of samples, so that the rows line up; the
paper variants are the comparison rows, not a published configuration.

The shared pieces of the two methods live here: `mlp`, `train_epochs` (the loop with its
checkpoints and non-finite-loss check), `latent_clusters` and `as_samples`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import nn

from methods.base import Method, RunContext, RunData, Training, flat_features

READOUT_BATCH = 1000


# Shared with methods/vdae.py ----------------------------------------------------------------

def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """One hidden layer of ReLU units, linear output."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def check_positive(name: str, config: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if config[key] < 1:
            raise ValueError(f"{name}: {key} must be at least 1, got {config[key]}")


def check_batch(name: str, key: str, batch_size: int, n: int) -> None:
    if batch_size > n:
        raise ValueError(f"{name}: {key} {batch_size} is larger than the {n} training examples; "
                         f"use 0 for full batches")


def train_epochs(run: RunContext, name: str, loss_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                 optimiser: torch.optim.Optimizer, generator: torch.Generator, n: int, batch_size: int,
                 epochs: range, checkpoint: Callable[[int], None], checkpoint_every: int, columns: tuple[str, ...],
                 scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None, steps_per_epoch: int = 0,
                 validate: Callable[[], float] | None = None, min_lr: float = 0.0) -> None:
    """Train over `epochs` (a range of 1-based epoch numbers): each epoch a fresh permutation of
    the n examples cut into batches of `batch_size` (0: one full batch; the last incomplete
    batch dropped), or, with `steps_per_epoch`, that many batches each drawn afresh without
    replacement; `loss_fn(index)` gives the batch's terms, "loss" among them. Logs the
    epoch means of `columns` (empty where a stage has no such term), steps `scheduler` on
    `validate()` (default: the epoch's mean loss), stops once the learning rate is down to
    `min_lr`, and calls `checkpoint(epoch)` every `checkpoint_every` epochs, after the last and
    on stopping. A non-finite loss raises FloatingPointError naming the epoch and step, before
    any update."""
    batch = batch_size or n
    steps = steps_per_epoch or n // batch
    device = generator.device
    for epoch in run.progress(epochs, total=len(epochs), desc=f"{name} epochs"):
        if lr_spent(optimiser, min_lr):          # a run resumed after it stopped
            return
        if steps_per_epoch:
            order = torch.stack([torch.randperm(n, generator=generator, device=device)[:batch] for _ in range(steps)])
        else:
            order = torch.randperm(n, generator=generator, device=device)[:steps * batch].view(steps, batch)
        sums: dict[str, torch.Tensor] = {}
        for step, index in enumerate(order):
            terms = loss_fn(index)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: loss is {loss.item()} at epoch {epoch}, step {step}")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.detach()
        means = {key: float(value) / steps for key, value in sums.items()}
        if validate is not None:
            means["val_loss"] = validate()
        if scheduler is not None:
            scheduler.step(means.get("val_loss", means["loss"]))
        run.log(stage=name, epoch=epoch, lr=optimiser.param_groups[0]["lr"],
                **{key: round(means[key], 6) if key in means else "" for key in columns})
        if epoch % checkpoint_every == 0 or epoch == epochs[-1] or lr_spent(optimiser, min_lr):
            checkpoint(epoch)


def lr_spent(optimiser: torch.optim.Optimizer, min_lr: float) -> bool:
    """The learning rate is down to min_lr (with room for the drops' rounding: 1e-5 * 0.1 * 0.1 > 1e-7)."""
    return optimiser.param_groups[0]["lr"] <= min_lr * (1 + 1e-6)


def latent_clusters(embedding: np.ndarray, data: RunData, run: RunContext) -> dict[str, np.ndarray]:
    """assignments and probs from a full-covariance Gaussian mixture on the latent means, with
    as many components as the dataset has classes (none for unlabelled data)."""
    if not data.dataset.n_classes or data.score.labels is None:
        return {}
    mixture = GaussianMixture(data.dataset.n_classes, covariance_type="full", reg_covar=1e-5,
                              random_state=run.sklearn_seed(1)).fit(embedding.astype(np.float64))
    probs = mixture.predict_proba(embedding.astype(np.float64))
    return {"assignments": probs.argmax(1).astype(np.int64), "probs": probs.astype(np.float32)}


def as_samples(x: torch.Tensor, data: RunData) -> np.ndarray:
    """Generated feature rows as the dataset's kind: uint8 images N x C x H x W, or float32 points."""
    x = x.detach().cpu()
    if data.dataset.kind == "images":
        images = x.clamp(0, 1).view(-1, *data.fit.x.shape[1:]).numpy() * 255
        return np.rint(images).astype(np.uint8)
    return x.numpy().astype(np.float32)


def features(data: RunData, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fit and score splits as float32 feature rows on the device."""
    fit = torch.from_numpy(flat_features(data.fit)).to(device)
    return fit, fit if data.score is data.fit else torch.from_numpy(flat_features(data.score)).to(device)


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(chunk) for chunk in x.split(READOUT_BATCH)])


# The plain VAE --------------------------------------------------------------------------------

class VAE(nn.Module):
    def __init__(self, in_dim: int, hidden: int, d: int):
        super().__init__()
        self.encoder = mlp(in_dim, hidden, 2 * d)
        self.decoder = mlp(d, hidden, in_dim)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).chunk(2, -1)[0]

    def terms(self, x: torch.Tensor, sigma: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, -1)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator, device=mu.device)
        recon = ((self.decoder(z) - x) ** 2).sum(-1) / (2 * sigma ** 2)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
        return {"loss": (recon + kl).mean(), "recon": recon.mean(), "kl": kl.mean()}


class VAEMethod(Method):
    name = "vae"
    tracks = ("clustering", "generation", "topology")
    budget = "epochs"

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_positive("vae", config, ("d", "hidden", "epochs", "checkpoint_every"))
        if config["sigma"] <= 0 or config["lr"] <= 0 or config["batch_size"] < 0 or config["n_samples"] < 0:
            raise ValueError("vae: sigma and lr must be positive, batch_size and n_samples at least 0")
        check_batch("vae", "batch_size", config["batch_size"], len(data.fit))
        device = run.device
        fit_x, score_x = features(data, device)
        training = Training.start(run, lambda: VAE(fit_x.shape[1], config["hidden"], config["d"]), config["lr"])
        model, generator = training.model, training.generator
        train_epochs(run, "vae", lambda index: model.terms(fit_x[index], config["sigma"], generator),
                     training.optimiser, generator, len(fit_x), config["batch_size"],
                     range(training.epoch + 1, config["epochs"] + 1), lambda epoch: training.save(run, epoch),
                     config["checkpoint_every"], ("loss", "recon", "kl"))

        model.eval()
        embedding = in_chunks(model.mean, score_x)
        prior = torch.randn((config["n_samples"] or len(score_x), config["d"]), generator=generator, device=device)
        outputs = {"embedding": embedding.cpu().numpy().astype(np.float32),
                   "decoded": in_chunks(model.decoder, embedding).cpu().numpy().astype(np.float32),
                   "samples": as_samples(in_chunks(model.decoder, prior), data)}
        return {**outputs, **latent_clusters(outputs["embedding"], data, run)}
