"""VDAE: the variational diffusion autoencoder of Li, Lindenbaum, Cheng and Cloninger,
"Variational Diffusion Autoencoders with Random Walk Sampling" (arXiv 1905.12724, ECCV 2020).

    python -m bench run --suite quick --dataset circle --method vdae --variant quick --seed 0
    python -m bench run --suite paper --dataset mnist --method vdae --variant paper-mnist --seed 0

Spec: docs/methods/vdae.md with its corrections from the authors' TensorFlow code
(lihenryhfl/SpectralVAEGAN, package `vdae`: networks.py, costs.py, util.py and the notebook
vdae_examples.ipynb), which the paper variants follow where the spec and the code disagree.
Written by us from those facts; no code copied.

Stage 1 (methods/diffusion_maps.py): SpectralNet psi: x -> R^d learns the diffusion-map
embedding: MLP (`hidden` ReLU, d tanh) and the orthonormalisation layer; loss
sum_ij W_ij |psi_i - psi_j|^2 / (2B), W the symmetrised Gaussian affinity over each point's
`affinity_k` nearest points, itself counted, with one global scale (`affinity_scale: global`):
the median, over a sample of `spectral_batch_size` points, of the distance to the
`scale_neighbour`-th nearest, itself counted. RMSProp (`spectral_lr`); an epoch is
`spectral_steps` random batches of `spectral_batch_size` (0: one pass); the learning rate drops
x0.1 when the validation loss (the loss summed over consecutive batches of the score split,
in eval mode: the notebook's x_test) has not improved for `spectral_patience` epochs; training
stops once it is down to `spectral_min_lr`, or after `spectral_epochs`.

Stage 2, the VDAE, with psi frozen (eval mode: the last training batch's orthonormalisation):

    encoder mean         mu(x) = psi(x)
    encoder covariance   Sigma(x) = V diag(exp(2e)) V^T, V = Q of the QR factorisation of an
                         MLP's d x d output, e = a second MLP's output (`hidden` ReLU units
                         each), both MLPs reading psi(x) (`covariance_input: embedding`)
    decoder              MLP (`hidden` ReLU units) to the input dimension
    z ~ N(mu(x), Sigma(x)), reparameterised as z = mu + V (exp(e) * eps), eps ~ N(0, I).

Loss of a batch, the reconstruction plus `kl_weight` (1) times the KL, each summed over the
batch (the code's Keras loss):
- neighbourhood reconstruction: N(i) = the `k` nearest encoder means mu_j in the batch to the
  *drawn* z_i, the nearest one dropped (`neighbours_of: sample`; the code's pick_nearest_k with
  drop_self), so the targets move with the draw; mean over j in N(i) of the mean squared
  error (over features) between decoder(z_i) and x_j;
- covariance KL as coded (`kl: coded`): with S = sum_{j in N(i)} mu_j mu_j^T (uncentred, no 1/k),
  e_nb its eigenvalues plus `prior_jitter` (0.1), e those of Sigma(x_i) and s the singular
  values of (S + 0.1 I)^-1 Sigma(x_i):  sum over the d directions of
  log(e_nb + 1e-5) - log e - 1 + s  (no 1/2; about twice the exact Gaussian KL).
  No gradient flows into the target (psi is frozen).
Adam (`lr`), `epochs` epochs of batches of `batch_size` (0: full batch, as the notebook).

Data (`rescale`, as the notebook for all but MNIST): the fit split's global min and max are
mapped to -1 and 1 before training; decodings and samples are mapped back to data units.

Random-walk sampling (the notebook's): rounds of `walk_seeds` (200) seeds drawn without
replacement from the score split; each step every point x branches into `walk_branching` (2)
draws z ~ N(mu(x), Sigma(x)), each decoded to a new x, and `walk_max_points` (1,000) of them
are kept at random; after `walk_steps` (4) steps the round's points join the samples; rounds
repeat until `n_samples` points (0: as many as the score split).

Outputs about the score split: embedding = mu(x); decoded = decoder(mu(x)), same rows (our
bi-Lipschitz protocol, `pairs=latent-mean`); samples = the random walk's points: float32 N x D
for points, uint8 N x C x H x W for images (clipped to [0, 1], times 255, rounded);
walk_latent and walk_decoded = the last round's last generation, its sampled z and their
decodings in the model's (rescaled) units, as the notebook scores its bi-Lipschitz constant
(`pairs=random-walk`, the paper's protocol); for labelled data, assignments and probs from a
Gaussian mixture on the latent means (methods/vae.py `latent_clusters`): our clustering
protocol, not the paper's.

Every correction from the code has a switch back to the spec's first reading, so that an
ablation is a set of variants (config/methods.yaml, quick-*; benchmarks/vdae_ablation.py
prints their GW): `neighbours_of: mean` (the neighbours of mu_i), `covariance_input: data`
(the MLPs read x), `kl: exact` (the exact Gaussian KL to N(0, S / k + 0.1 I), ours before),
`affinity_scale: local` (sigma_i = point i's own distance to its `scale_neighbour`-th
nearest), `rescale: false`, and the old walk as walk_seeds = ceil(n / 16) with
walk_max_points 0 (one round, nothing dropped).

Determinism: all weights initialised under a forked torch RNG seeded with run.seed; every draw
(the affinity's scale sample, batch orders of both stages, reparameterisation, seeds, steps
and subsamples of the walk) from one torch.Generator seeded with run.seed. A checkpoint every
`checkpoint_every` epochs of either stage (and when SpectralNet stops) holds both networks,
both optimisers, the scheduler, the stage, the epoch and the generator's state: a resumed run
gives the numbers of an uninterrupted one (bit-identical on CPU). A non-finite loss raises
FloatingPointError naming the stage, epoch and step.

Differences from the authors' code (methods/diffusion_maps.py lists SpectralNet's own):
- The spectral loss is computed as the Laplacian's quadratic form, the same number
  (methods/diffusion_maps.py, `spectral_loss`), cheaper and deterministic on several threads
  (ours).
- The affinity's scale sample is drawn without replacement (ours; the code's draw with
  replacement, as large as the data in full batches, gives the median scale 0).
- The plateau test is "lower than the best" (torch, threshold 0); the code's is "not higher"
  (ours: they differ only on an exact tie).
- The walk's last generation keeps each z with its own decoding (ours; the notebook shuffles
  the decodings once more after its last step, so its bi-Lipschitz pairs are mismatched).
- One `hidden` width for every MLP (as the authors' code: `arch = [500]` for each).
- paper-mnist: the notebook's 10,000 full-batch iterations on the 60,000 training images
  would need a 60,000 x 60,000 distance matrix per step (14 GB); we use batches of 6,000 for
  10,000 epochs (100,000 iterations), so every point takes part in as many updates as with
  10,000 full batches; neighbours are then found among the 6,000 of a batch (ours). 10,000
  random-walk samples (ours: the MNIST FID convention; the notebook draws as many as the
  training set). paper-manifolds-d2/-d3: full batches of the 2,000 points, as the notebook's
  loop (bsize = the training set), d = 2 (circle) or 3 (sphere, torus, swiss roll) (ours: the
  notebook's loop has d = 3).
- `neighbour_covariance: relative` (ours; no paper variant uses it): the neighbours' means
  relative to the point's own, a local covariance instead of the uncentred second moment,
  whose variance along mu itself (|mu|^2, about d) throws draws across the latent origin.
- Clustering read-out (GMM on the latent means) (ours).
- The quick/smoke settings are ours: widths, learning rates, epochs, one full batch per
  SpectralNet epoch (`spectral_steps: 0`), 500 samples, and more affinity neighbours
  (`affinity_k` 16, `scale_neighbour` 8 on the manifolds; 10 and 5 on digits) than the paper's
  2: with 2 the neighbour graph of a few thousand noisy points breaks into pieces, and the
  diffusion map of a broken circle is that of a segment.
- Under precision bf16 (where native: CUDA, or a CPU with AMX or AVX512-BF16) the networks'
  training passes compute in bf16; losses, KL terms, the neighbour covariances and every read-
  out are fp32 (ours; methods/nets/precision.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from methods.base import Method, RunContext, RunData
from methods.diffusion_maps import SpectralNet, gaussian_affinity, global_scale, local_scale, spectral_loss
from methods.vae import (as_samples, check_batch, check_positive, features, in_chunks, latent_clusters, mlp,
                         train_epochs)

STAGES = ("spectralnet", "vdae")
CHOICES = {                               # first the authors' code's, then the spec's reading (relative: ours)
    "neighbours_of": ("sample", "mean"),
    "covariance_input": ("embedding", "data"),
    "kl": ("coded", "exact"),
    "affinity_scale": ("global", "local"),
    "neighbour_covariance": ("uncentred", "relative"),
}
LOG_COLUMNS = ("loss", "val_loss", "recon", "kl")
LOG_EPS = 1e-5                            # the code's eps in log(e_nb + eps)


def covariance(rotation: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """V diag(exp(2e)) V^T for batches of V (B x d x d) and e (B x d)."""
    return rotation @ torch.diag_embed((2 * log_scale).exp()) @ rotation.transpose(-1, -2)


def covariance_kl(cov_q: torch.Tensor, cov_p: torch.Tensor) -> torch.Tensor:
    """KL(N(0, cov_q) || N(0, cov_p)) for batches of d x d covariances."""
    chol_q, chol_p = torch.linalg.cholesky(cov_q), torch.linalg.cholesky(cov_p)
    trace = torch.cholesky_solve(cov_q, chol_p).diagonal(dim1=-2, dim2=-1).sum(-1)
    log_det = lambda chol: 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # noqa: E731
    return 0.5 * (trace - cov_q.shape[-1] + log_det(chol_p) - log_det(chol_q))


def coded_kl(cov_q: torch.Tensor, log_eig_q: torch.Tensor, scatter: torch.Tensor, jitter: float) -> torch.Tensor:
    """The code's KL term for batches of d x d matrices: sum over the d eigen-directions of
    log(e_nb + eps) - log e - 1 + s, with e_nb the eigenvalues of `scatter` plus `jitter`, e
    those of cov_q (given as their logs) and s the singular values of (scatter + jitter I)^-1 cov_q."""
    e_nb, v_nb = torch.linalg.eigh(scatter)
    e_nb = e_nb + jitter
    inverse = v_nb @ torch.diag_embed(1 / e_nb) @ v_nb.mT
    return ((e_nb + LOG_EPS).log() - log_eig_q - 1 + torch.linalg.svdvals(inverse @ cov_q)).sum(-1)


def nearest_means(queries: torch.Tensor, means: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B x k) of the k nearest means to each query, the nearest one dropped (the
    code's pick_nearest_k with drop_self: usually the query's own mean)."""
    return torch.cdist(queries, means).topk(k + 1, largest=False).indices[:, 1:]


class VDAE(nn.Module):
    def __init__(self, spectralnet: SpectralNet, in_dim: int, config: dict):
        super().__init__()
        d, hidden = config["d"], config["hidden"]
        self.config = config
        self.spectralnet = spectralnet
        covariance_in = d if config["covariance_input"] == "embedding" else in_dim
        self.rotation = mlp(covariance_in, hidden, d * d)
        self.log_scale = mlp(covariance_in, hidden, d)
        self.decoder = mlp(d, hidden, in_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.spectralnet.eval()       # frozen: always the last training batch's orthonormalisation
        return self

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mu(x), V(x), e(x)."""
        d = self.config["d"]
        mu = self.spectralnet(x)
        source = mu if self.config["covariance_input"] == "embedding" else x
        return mu, torch.linalg.qr(self.rotation(source).view(-1, d, d)).Q, self.log_scale(source)

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        mu, rotation, log_scale = self.encode(x)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        return mu + (rotation @ (log_scale.exp() * noise).unsqueeze(-1)).squeeze(-1), mu, rotation, log_scale

    def terms(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The loss and its two terms, each summed over the batch (as the code's Keras loss)."""
        c = self.config
        z, mu, rotation, log_scale = self.sample(x, generator)
        neighbours = nearest_means(z if c["neighbours_of"] == "sample" else mu, mu, c["k"])   # (B, k)
        recon = ((self.decoder(z).unsqueeze(1) - x[neighbours]) ** 2).mean((-1, -2)).sum()
        means = mu[neighbours]                                                  # (B, k, d)
        if c["neighbour_covariance"] == "relative":
            means = means - mu.unsqueeze(1)
        scatter, cov_q = means.mT @ means, covariance(rotation, log_scale)
        if c["kl"] == "coded":
            kl = coded_kl(cov_q, 2 * log_scale, scatter, c["prior_jitter"]).sum()
        else:
            kl = covariance_kl(cov_q, scatter / c["k"] + c["prior_jitter"] * torch.eye(c["d"], device=x.device)).sum()
        return {"loss": recon + c["kl_weight"] * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def random_walk(self, score_x: torch.Tensor, n: int, config: dict,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n random-walk points, and the last round's last generation: its sampled z and their
        decodings. Rounds of `walk_seeds` seeds, each `walk_steps` steps of `walk_branching`
        draws per point, subsampled to `walk_max_points` (0: all) after each step, until n points."""
        rounds, total = [], 0
        while total < n:
            x = score_x[torch.randperm(len(score_x), generator=generator, device=score_x.device)[:config["walk_seeds"]]]
            for _ in range(config["walk_steps"]):
                branches = x.repeat_interleave(config["walk_branching"], 0)
                z = in_chunks(lambda chunk: self.sample(chunk, generator)[0], branches)
                x = in_chunks(self.decoder, z)
                if config["walk_max_points"]:
                    keep = torch.randperm(len(x), generator=generator, device=x.device)[:config["walk_max_points"]]
                    z, x = z[keep], x[keep]
            rounds.append(x)
            total += len(x)
        return torch.cat(rounds)[:n], z, x


def check_config(config: dict, data: RunData) -> None:
    """Every bad setting, named, before anything is built."""
    for key, valid in CHOICES.items():
        if config[key] not in valid:
            raise ValueError(f"vdae: unknown {key} '{config[key]}'; valid: {', '.join(valid)}")
    check_positive("vdae", config, ("d", "hidden", "affinity_k", "scale_neighbour", "k", "spectral_epochs",
                                    "spectral_patience", "epochs", "checkpoint_every", "walk_steps", "walk_branching",
                                    "walk_seeds"))
    for key in ("spectral_lr", "lr", "prior_jitter", "kl_weight"):
        if config[key] <= 0:
            raise ValueError(f"vdae: {key} must be positive, got {config[key]}")
    for key in ("n_samples", "walk_max_points", "spectral_steps", "spectral_min_lr"):
        if config[key] < 0:
            raise ValueError(f"vdae: {key} must be at least 0, got {config[key]}")
    if config["scale_neighbour"] > config["affinity_k"]:
        raise ValueError(f"vdae: scale_neighbour {config['scale_neighbour']} is beyond the affinity's "
                         f"{config['affinity_k']} nearest points (affinity_k)")
    if config["walk_seeds"] > len(data.score):
        raise ValueError(f"vdae: walk_seeds {config['walk_seeds']} is more than the {len(data.score)} points of the "
                         f"score split the random walk starts from; lower walk_seeds")
    for key in ("spectral_batch_size", "batch_size"):
        check_batch("vdae", key, config[key], len(data.fit))
        batch = config[key] or len(data.fit)
        if batch <= max(config["k"], config["affinity_k"], config["d"]):
            raise ValueError(f"vdae: {key} {batch} must exceed the neighbours (k, affinity_k) and d")


def rescaling(fit_x: torch.Tensor, enabled: bool) -> tuple[float, float]:
    """Centre and half-range (a, b) of the notebook's (x - a) / b, which maps the fit data's
    global min and max to -1 and 1; (0, 1) when disabled."""
    if not enabled:
        return 0.0, 1.0
    low, high = float(fit_x.min()), float(fit_x.max())
    if high == low:
        raise ValueError("vdae: every feature value of the fit split is the same; cannot rescale it (rescale: false)")
    return (high + low) / 2, (high - low) / 2


class VDAEMethod(Method):
    name = "vdae"
    tracks = ("clustering", "generation", "topology")
    budget = "epochs"       # the VAE stage's (SpectralNet's stage keeps its length)

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_config(config, data)
        device = run.device
        fit_x, score_x = features(data, device)
        centre, half_range = rescaling(fit_x, config["rescale"])
        fit_x, score_x = (fit_x - centre) / half_range, (score_x - centre) / half_range
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed)
            spectralnet = SpectralNet(fit_x.shape[1], config["hidden"], config["d"])
            model = run.network(VDAE(spectralnet, fit_x.shape[1], config))
        spectral_optimiser = torch.optim.RMSprop(spectralnet.parameters(), lr=config["spectral_lr"])
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(spectral_optimiser, factor=0.1, threshold=0,
                                                               patience=config["spectral_patience"])
        trainable = [p for name, p in model.named_parameters() if not name.startswith("spectralnet.")]
        optimiser = torch.optim.Adam(trainable, lr=config["lr"])
        generator = torch.Generator(device=device).manual_seed(run.seed)
        # drawn before a checkpoint restores the generator, so that a resumed run finds the same scale
        scale = global_scale(fit_x, config["scale_neighbour"], config["spectral_batch_size"] or len(fit_x), generator)
        done = {stage: 0 for stage in STAGES}
        state = run.load_checkpoint()
        if state is not None:
            model.load_state_dict(state["model"])
            spectral_optimiser.load_state_dict(state["spectral_optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            optimiser.load_state_dict(state["optimiser"])
            generator.set_state(state["generator"])
            done = state["done"]

        def checkpoint(stage: str):
            def save(epoch: int) -> None:
                done[stage] = epoch
                run.save_checkpoint({"model": model.state_dict(), "spectral_optimiser": spectral_optimiser.state_dict(),
                                     "scheduler": scheduler.state_dict(), "optimiser": optimiser.state_dict(),
                                     "generator": generator.get_state(), "done": dict(done)})
            return save

        def loss_of(x: torch.Tensor) -> torch.Tensor:
            sigma = scale if config["affinity_scale"] == "global" else local_scale(x, config["scale_neighbour"])
            return spectral_loss(spectralnet(x), gaussian_affinity(x, config["affinity_k"], sigma))

        @torch.no_grad()
        def validation_loss() -> float:
            """The code's: the loss summed over consecutive batches of the score split, in eval mode."""
            spectralnet.eval()
            batches = score_x.split(config["spectral_batch_size"] or len(score_x))
            total = sum(float(loss_of(batch)) for batch in batches if len(batch) >= config["affinity_k"])
            spectralnet.train()
            return total

        spectralnet.train()
        train_epochs(run, "spectralnet", lambda index: {"loss": loss_of(fit_x[index])}, spectral_optimiser, generator,
                     len(fit_x), config["spectral_batch_size"],
                     range(done["spectralnet"] + 1, config["spectral_epochs"] + 1), checkpoint("spectralnet"),
                     config["checkpoint_every"], LOG_COLUMNS, scheduler, steps_per_epoch=config["spectral_steps"],
                     validate=validation_loss, min_lr=config["spectral_min_lr"])
        spectralnet.requires_grad_(False)
        model.train()
        train_epochs(run, "vdae", lambda index: model.terms(fit_x[index], generator), optimiser, generator,
                     len(fit_x), config["batch_size"], range(done["vdae"] + 1, config["epochs"] + 1),
                     checkpoint("vdae"), config["checkpoint_every"], LOG_COLUMNS)

        model.eval()
        embedding = in_chunks(model.spectralnet, score_x)
        walk, walk_latent, walk_decoded = model.random_walk(score_x, config["n_samples"] or len(score_x), config,
                                                            generator)
        decoded = in_chunks(model.decoder, embedding) * half_range + centre
        outputs = {"embedding": embedding.cpu().numpy().astype(np.float32),
                   "decoded": decoded.cpu().numpy().astype(np.float32),
                   "samples": as_samples(walk * half_range + centre, data),
                   # the last generation in the model's units, as the notebook scores its bi-Lipschitz constant
                   "walk_latent": walk_latent.cpu().numpy().astype(np.float32),
                   "walk_decoded": walk_decoded.cpu().numpy().astype(np.float32)}
        return {**outputs, **latent_clusters(outputs["embedding"], data, run)}
