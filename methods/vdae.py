"""VDAE: the variational diffusion autoencoder of Li, Lindenbaum, Cheng and Cloninger,
"Variational Diffusion Autoencoders with Random Walk Sampling" (arXiv 1905.12724, ECCV 2020).

    python -m bench run --suite quick --dataset circle --method vdae --variant quick --seed 0
    python -m bench run --suite paper --dataset mnist --method vdae --variant paper-mnist --seed 0

Spec: ../shared/specs/vdae.md. Written from the spec; not the authors' TensorFlow code.

Stage 1 (methods/diffusion_maps.py): SpectralNet psi: x -> R^d learns the diffusion-map
embedding: MLP (`hidden` ReLU, d tanh) and the orthonormalisation layer; loss
sum_ij W_ij |psi_i - psi_j|^2 / (2B), W the symmetrised Gaussian affinity over the
`affinity_k` nearest neighbours with local scale = distance to the `scale_neighbour`-th;
RMSProp (`spectral_lr`), learning rate times 0.1 when the epoch loss has not improved for
`spectral_patience` epochs, `spectral_epochs` epochs of batches of `spectral_batch_size`.

Stage 2, the VDAE, with psi frozen (eval mode: the last training batch's orthonormalisation):

    encoder mean         mu(x) = psi(x)
    encoder covariance   Sigma(x) = V diag(exp(2e)) V^T, V = Q of the QR factorisation of an
                         MLP's d x d output, e = a second MLP's output (`hidden` ReLU units each)
    decoder              MLP (`hidden` ReLU units) to the input dimension
    z ~ N(mu(x), Sigma(x)), reparameterised as z = mu + V (exp(e) * eps), eps ~ N(0, I).

Loss per example i of a batch (mean over the batch), weights 1 and `kl_weight` (1):
- neighbourhood reconstruction: N(i) = the `k` nearest encoder means mu_j in the batch
  (i itself excluded); mean over j in N(i) of the mean squared error (over features) between
  decoder(z_i) and x_j;
- covariance KL: KL(N(0, Sigma(x_i)) || N(0, Sigma_nb(i) + `prior_jitter` I)) with
  Sigma_nb(i) = (1/k) sum_{j in N(i)} mu_j mu_j^T, the uncentred covariance of the neighbours'
  means (as the authors' code has it; `neighbour_covariance: uncentred`, the default). No
  gradient flows into the target (psi is frozen).
Adam (`lr`), `epochs` epochs of batches of `batch_size` (0: full batch, as the notebook).

Random-walk sampling: seeds drawn without replacement from the score split; each step every
point x branches into `walk_branching` draws z ~ N(mu(x), Sigma(x)), each decoded to a new x;
after `walk_steps` steps the last generation is the sample set (`n_samples` points, 0: as
many as the score split; ceil(n / branching^steps) seeds).

Outputs about the score split: embedding = mu(x); decoded = decoder(mu(x)), same rows (the
topology track's bi-Lipschitz constant); samples = the random walk's points: float32 N x D for
points, uint8 N x C x H x W for images (clipped to [0, 1], times 255, rounded); for labelled
data, assignments and probs from a Gaussian mixture on the latent means (methods/vae.py
`latent_clusters`): our clustering protocol, not the paper's.

Determinism: all weights initialised under a forked torch RNG seeded with run.seed; every draw
(batch orders of both stages, reparameterisation, seeds and steps of the walk) from one
torch.Generator seeded with run.seed. A checkpoint every `checkpoint_every` epochs of either
stage holds both networks, both optimisers, the scheduler, the stage, the epoch and the
generator's state: a resumed run gives the numbers of an uninterrupted one (bit-identical on
CPU). A non-finite loss raises FloatingPointError naming the stage, epoch and step.

Deviations from the spec and readings of what it leaves open:
- The spectral loss is computed as the Laplacian's quadratic form, the same number
  (methods/diffusion_maps.py, `spectral_loss`), cheaper and deterministic on several threads.
- SpectralNet centres each batch before orthonormalising (methods/diffusion_maps.py says why:
  the trivial constant eigenvector is excluded); "k nearest neighbours" exclude the point.
- The reconstruction averages over neighbours and features (Keras' mean squared error); the
  spec does not say sum or mean.
- One `hidden` width for every MLP (the spec gives 500 for each it names).
- paper-mnist: the notebook's 10,000 full-batch iterations on the 60,000 training images
  would need a 60,000 x 60,000 distance matrix per step (14 GB); we use batches of 6,000 for
  10,000 epochs (100,000 iterations), so every point takes part in as many updates as with
  10,000 full batches; neighbours are then found among the 6,000 of a batch. SpectralNet's
  batch of 1,024 is SpectralNet's MNIST setting (the spec gives none); 10,000 random-walk
  samples (the MNIST FID convention). paper-manifolds-d2/-d3: full batches of the 2,000
  points, d = 2 (circle) or 3 (sphere, torus, swiss roll), within the spec's 2-3.
- The spec's uncentred KL target gives every draw a variance of about |mu|^2 along mu itself
  (psi has unit variance per coordinate, so |mu|^2 is about d): draws cross the latent origin
  and the decoder averages them toward the centre. `neighbour_covariance: relative` (ours,
  no variant uses it; tests/test_vdae.py measures it) takes the neighbours' means relative
  to the point's own, a local covariance; it is what gives the VDAE a lower GW than the VAE
  on the circle.
- Clustering read-out (GMM on the latent means) and the quick/smoke settings (widths, k,
  learning rates, epochs) are ours. The quick variants use more affinity neighbours
  (`affinity_k`) and a farther scale neighbour than the paper's 2: with k = 2 the
  neighbour graph of a few thousand noisy points breaks into pieces, and the diffusion map of
  a broken circle is that of a segment.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from methods.base import Method, RunContext, RunData
from methods.diffusion_maps import SpectralNet, gaussian_affinity, spectral_loss
from methods.vae import (as_samples, check_batch, check_positive, features, in_chunks, latent_clusters, mlp,
                         train_epochs)

STAGES = ("spectralnet", "vdae")
NEIGHBOUR_COVARIANCES = ("uncentred", "relative")
LOG_COLUMNS = ("loss", "recon", "kl")


def covariance(rotation: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """V diag(exp(2e)) V^T for batches of V (B x d x d) and e (B x d)."""
    return rotation @ torch.diag_embed((2 * log_scale).exp()) @ rotation.transpose(-1, -2)


def covariance_kl(cov_q: torch.Tensor, cov_p: torch.Tensor) -> torch.Tensor:
    """KL(N(0, cov_q) || N(0, cov_p)) for batches of d x d covariances."""
    chol_q, chol_p = torch.linalg.cholesky(cov_q), torch.linalg.cholesky(cov_p)
    trace = torch.cholesky_solve(cov_q, chol_p).diagonal(dim1=-2, dim2=-1).sum(-1)
    log_det = lambda chol: 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # noqa: E731
    return 0.5 * (trace - cov_q.shape[-1] + log_det(chol_p) - log_det(chol_q))


def nearest_neighbours(points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B x k) of each row's k nearest other rows."""
    return torch.cdist(points, points).topk(k + 1, largest=False).indices[:, 1:]


class VDAE(nn.Module):
    def __init__(self, spectralnet: SpectralNet, in_dim: int, config: dict):
        super().__init__()
        d, hidden = config["d"], config["hidden"]
        self.config = config
        self.spectralnet = spectralnet
        self.rotation = mlp(in_dim, hidden, d * d)
        self.log_scale = mlp(in_dim, hidden, d)
        self.decoder = mlp(d, hidden, in_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.spectralnet.eval()       # frozen: always the last training batch's orthonormalisation
        return self

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mu(x), V(x), e(x)."""
        d = self.config["d"]
        rotation = torch.linalg.qr(self.rotation(x).view(-1, d, d)).Q
        return self.spectralnet(x), rotation, self.log_scale(x)

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        mu, rotation, log_scale = self.encode(x)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        return mu + (rotation @ (log_scale.exp() * noise).unsqueeze(-1)).squeeze(-1), mu, rotation, log_scale

    def terms(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        z, mu, rotation, log_scale = self.sample(x, generator)
        neighbours = nearest_neighbours(mu, c["k"])                              # (B, k)
        recon = ((self.decoder(z).unsqueeze(1) - x[neighbours]) ** 2).mean((-1, -2))
        means = mu[neighbours]                                                  # (B, k, d)
        if c["neighbour_covariance"] == "relative":
            means = means - mu.unsqueeze(1)
        target = means.transpose(-1, -2) @ means / c["k"] + c["prior_jitter"] * torch.eye(c["d"], device=x.device)
        kl = covariance_kl(covariance(rotation, log_scale), target)
        return {"loss": (recon + c["kl_weight"] * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}

    @torch.no_grad()
    def random_walk(self, seeds: torch.Tensor, steps: int, branching: int, generator: torch.Generator) -> torch.Tensor:
        x = seeds
        for _ in range(steps):
            x = in_chunks(lambda chunk: self.decoder(self.sample(chunk, generator)[0]),
                          x.repeat_interleave(branching, 0))
        return x


def walk_seeds(config: dict, n_score: int) -> int:
    """How many random-walk seeds give the samples: ceil(n / branching^steps)."""
    return math.ceil((config["n_samples"] or n_score) / config["walk_branching"] ** config["walk_steps"])


def check_config(config: dict, data: RunData) -> None:
    """Every bad setting, named, before anything is built."""
    if config["neighbour_covariance"] not in NEIGHBOUR_COVARIANCES:
        raise ValueError(f"vdae: unknown neighbour_covariance '{config['neighbour_covariance']}'; "
                         f"valid: {', '.join(NEIGHBOUR_COVARIANCES)}")
    check_positive("vdae", config, ("d", "hidden", "affinity_k", "scale_neighbour", "k", "spectral_epochs",
                                    "spectral_patience", "epochs", "checkpoint_every", "walk_steps", "walk_branching"))
    for key in ("spectral_lr", "lr", "prior_jitter", "kl_weight"):
        if config[key] <= 0:
            raise ValueError(f"vdae: {key} must be positive, got {config[key]}")
    if config["scale_neighbour"] > config["affinity_k"]:
        raise ValueError(f"vdae: scale_neighbour {config['scale_neighbour']} is beyond the affinity's "
                         f"{config['affinity_k']} neighbours (affinity_k)")
    if config["n_samples"] < 0:
        raise ValueError(f"vdae: n_samples must be at least 0, got {config['n_samples']}")
    if walk_seeds(config, len(data.score)) > len(data.score):
        raise ValueError(f"vdae: {config['n_samples']} samples need {walk_seeds(config, len(data.score))} random-walk "
                         f"seeds, more than the {len(data.score)} points of the score split; raise walk_steps or "
                         f"walk_branching")
    for key in ("spectral_batch_size", "batch_size"):
        check_batch("vdae", key, config[key], len(data.fit))
        batch = config[key] or len(data.fit)
        if batch <= max(config["k"], config["affinity_k"], config["d"]):
            raise ValueError(f"vdae: {key} {batch} must exceed the neighbours (k, affinity_k) and d")


class VDAEMethod(Method):
    name = "vdae"
    tracks = ("clustering", "generation", "topology")

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_config(config, data)
        device = run.device
        fit_x, score_x = features(data, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed)
            spectralnet = SpectralNet(fit_x.shape[1], config["hidden"], config["d"]).to(device)
            model = VDAE(spectralnet, fit_x.shape[1], config).to(device)
        spectral_optimiser = torch.optim.RMSprop(spectralnet.parameters(), lr=config["spectral_lr"])
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(spectral_optimiser, factor=0.1,
                                                               patience=config["spectral_patience"])
        trainable = [p for name, p in model.named_parameters() if not name.startswith("spectralnet.")]
        optimiser = torch.optim.Adam(trainable, lr=config["lr"])
        generator = torch.Generator(device=device).manual_seed(run.seed)
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

        def spectral_terms(index: torch.Tensor) -> dict[str, torch.Tensor]:
            x = fit_x[index]
            return {"loss": spectral_loss(spectralnet(x), gaussian_affinity(x, config["affinity_k"],
                                                                            config["scale_neighbour"]))}
        spectralnet.train()
        train_epochs(run, "spectralnet", spectral_terms, spectral_optimiser, generator, len(fit_x),
                     config["spectral_batch_size"], range(done["spectralnet"] + 1, config["spectral_epochs"] + 1),
                     checkpoint("spectralnet"), config["checkpoint_every"], LOG_COLUMNS, scheduler)
        spectralnet.requires_grad_(False)
        model.train()
        train_epochs(run, "vdae", lambda index: model.terms(fit_x[index], generator), optimiser, generator,
                     len(fit_x), config["batch_size"], range(done["vdae"] + 1, config["epochs"] + 1),
                     checkpoint("vdae"), config["checkpoint_every"], LOG_COLUMNS)

        model.eval()
        embedding = in_chunks(model.spectralnet, score_x)
        n = config["n_samples"] or len(score_x)
        seeds = torch.randperm(len(score_x), generator=generator, device=device)[:walk_seeds(config, len(score_x))]
        walk = model.random_walk(score_x[seeds], config["walk_steps"], config["walk_branching"], generator)[:n]
        outputs = {"embedding": embedding.cpu().numpy().astype(np.float32),
                   "decoded": in_chunks(model.decoder, embedding).cpu().numpy().astype(np.float32),
                   "samples": as_samples(walk, data)}
        return {**outputs, **latent_clusters(outputs["embedding"], data, run)}
