"""GMVAE: the Gaussian-mixture variational autoencoder of Dilokthanakul et al. (arXiv 1611.02648).

    python -m bench run --suite paper --dataset mnist --method gmvae --variant paper-v1-k10-m1 --seed 0
    python -m bench run --suite quick --dataset digits --method gmvae --variant quick --seed 0

Spec: docs/methods/gmvae.md. Written from the paper's equations and checked against the
authors' Torch code (Nat-D/GMVAE: `master` for v1, `version2` for the final version;
docs/methods/gmvae.md, "Checked against the authors' code"); not their code, and not jariasf/GMVAE
(a different, Gumbel-softmax model).

Generative model (y observation, x continuous latent, w noise latent, z one-hot cluster):

    w ~ N(0, I)    z ~ Cat(1/K)    x | z, w ~ N(mu_z(w), diag sigma^2_z(w))    y | x ~ p(y|x)

ONE prior network maps w to the K means and K log-variances (linear w_dim->hidden, tanh, K
linear heads each way). p(y|x) is Bernoulli on grey levels in [0, 1] (not binarised; BCE
summed over pixels) or a diagonal Gaussian (the decoder gives mean and log-variance).
Recognition: q(x|y) = N(mu_x(y), sigma^2_x(y)) and q(w|y) = N(mu_w(y), sigma^2_w(y)) from one
encoder; the v1 objective adds a K-way softmax head q(z|y). The cluster posterior of the model
is closed form: p(z_k | x, w) = softmax_k log N(x | mu_k(w), sigma^2_k(w)) (the uniform prior
cancels).

Loss = minus the four-term ELBO, per example, averaged over the batch; (x_j, w_j), j = 1..M,
are reparameterised draws from q(x|y) q(w|y) (`m_samples` = M):

    reconstruction      -log p(y | x_1)
    conditional prior   mean_j sum_k r_jk KL(q(x|y) || p(x | w_j, z_k))   (analytic Gaussian KL)
    w-prior             KL(q(w|y) || N(0, I))
    z-prior   v1:       eta * KL(q(z|y) || uniform) + alpha * mean_j H(p(z | x_j, w_j))
              final:    cv_weight * max(lambda, mean_j KL(p(z | x_j, w_j) || uniform))

with cluster weights r_jk = q(z_k|y) for v1 (its variational posterior of z) and
r_jk = p(z_k | x_j, w_j) for final (which has no q(z|y) head). The max(lambda, .) is the
free-bits threshold: the z-prior of an example gives gradient only while its value exceeds
lambda (0.5 nats). On MNIST, alpha = 0.4, the authors' run script's `-cvWeight 0.4` (in v1
cvWeight is alpha; 2.0 is their spiral setting).

Sign quirk (`sign_quirk`, off by default, on in paper-final): the Torch code of the final
version (version2 main.lua L241-245) compares the batch-mean z-prior with lambda; when it
exceeds lambda, the z-prior's gradient is added to the gradient with respect to the
responsibilities p(z|x,w) and the sum is negated: the z-prior is descended, but the
conditional prior's gradient through the responsibilities is reversed (its gradients to
mu_x, log sigma^2_x and the prior network are not); under lambda neither happens. The flag
reproduces exactly that (`final_cluster_terms`); the correct gradient is the default. Only
the final objective has a threshold, so the flag is refused with v1.

Read-out: v1 scores the q(z|y) head (eval mode), as the authors' code does for its table
(master main.lua L377): assignments, probs and log_probs come from it, and p(z | x, w) at the
posterior means mu_x(y), mu_w(y) is a second read-out (`log_probs_mixture_posterior`, scored
with readout=mixture-posterior in its metric specs). final has no head: its read-out is that
p(z | x, w). A v1 run logs every epoch how often the head's argmax agrees with p(z|x,w)'s on
the training batches (`head_agreement`).

Outputs: assignments, probs and log_probs (N x K), embedding = mu_x(y) (N x x_dim) about the score split;
for image data, samples: for each cluster k in order, 1 + `samples_per_cluster` images decoded
(decoder mean) from x = mu_k(w), first with w = 0, then with w ~ N(0, I); uint8, C x H x W;
and sample_clusters, the cluster of each (the runner's sample grid has a row per cluster).
The paper's default of 10 per cluster is too few for FID (2,048 at least), which is then
recorded as unavailable; the quick variant's 25 per cluster reach the classifier FD's 256.

Architectures: `conv` is the spec's MNIST network (input C x 28 x 28): encoder conv 6x6 C->16,
6x6 16->32, 4x4 s2 p1 32->64, 9x9 64->hidden (28->23->18->9->1), each BN + ReLU, linear heads;
decoder linear x_dim->hidden + BN + ReLU and the mirrored transposed convolutions. `mlp` is
for small inputs: two linear+BN+ReLU layers of `hidden` units each way.

Determinism: the weights are initialised under a forked torch RNG seeded with run.seed, and
every draw of training (shuffling, reparameterisation, samples) comes from one
torch.Generator on the run's device seeded with run.seed. A checkpoint every
`checkpoint_every` epochs holds model, optimiser, epoch and that generator's state, so a
killed run resumes to the same numbers as an uninterrupted one (bit-identical on CPU).

Every remaining difference from the authors' code, and readings of what it leaves open:
- The conditional prior's cluster weights are the posterior the objective uses (q(z|y) for
  v1, p(z|x_j,w_j) for final), with gradient through them (as the authors' code).
- The final version's code weights each example's conditional-prior KL with the wrong
  examples' responsibilities (version2 UtilsNetwork.lua L49-53: Replicate(D), then a
  row-major Reshape(M*N, D) and Transpose scramble them across the batch, so example j is
  weighted by those of examples 4j..4j+3 mod 50 for N = 50, M = 1). We implement the intended
  weighting, each example's own; the published final numbers may depend on the bug (ours).
- Without the quirk, the free-bits threshold acts on each example's z-prior averaged over its
  M draws; the code gates the batch mean (ours).
- The loss is averaged over the batch rather than summed: all terms are scaled alike, so
  only Adam's epsilon sees the difference (ours).
- M counts draws of w and, paired with them, of x (p(z|x,w) needs both); the reconstruction
  term uses one draw of x, where the code averages it over the M draws, so the decoder's cost
  does not grow with M (ours).
- Training drops the last incomplete batch of each epoch (BatchNorm needs more than one
  example); the order is reshuffled every epoch, so every example is seen (ours).
- The v1 variants use K = 10 and 16 as the paper's table; the run script's K = 14 is the
  paper-v1-k14-m1 variant. paper-final-k10-m1's K = 10 and M = 1 are ours (the script has 14).
  The conv layer "64->500" uses `hidden` (500) for its width (as the authors' code).
- PyTorch's default initialisation (Torch7's differs, e.g. ConvTranspose bounds) (ours).
- The fully connected architecture, the Gaussian likelihood's learned per-pixel variance, and
  the quick/smoke settings (architecture, sizes, learning rate, epochs) are ours, not the paper's.
- Under precision bf16 (where native: CUDA, or a CPU with AMX or AVX512-BF16) the networks'
  training passes compute in bf16, channels-last (conv); losses, KL terms, the mixture
  posteriors and every read-out are fp32 (ours; methods/nets/precision.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from methods.base import Method, RunContext, RunData, Training, flat_features

OBJECTIVES = ("v1", "final")
ARCHITECTURES = ("conv", "mlp")
LIKELIHOODS = ("bernoulli", "gaussian")
READOUT_BATCH = 1000
LOG_2PI = math.log(2 * math.pi)


# The pieces of the objective ------------------------------------------------------------

def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, exp logvar_q) || N(mu_p, exp logvar_p)), diagonal, summed over the last dim."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(-1)


def gaussian_log_density(x, mu, logvar):
    """log N(x | mu, exp logvar), diagonal, summed over the last dim."""
    return -0.5 * (LOG_2PI + logvar + (x - mu) ** 2 / logvar.exp()).sum(-1)


def cluster_log_posterior(x, mu, logvar):
    """log p(z | x, w) over the last dim: x (..., D), mixture means and log-variances (..., K, D)."""
    return torch.log_softmax(gaussian_log_density(x.unsqueeze(-2), mu, logvar), dim=-1)


def entropy(log_p):
    """Entropy over the last dim, from log-probabilities (finite gradients where p underflows)."""
    return -(log_p.exp() * log_p).sum(-1)


def kl_to_uniform(log_p):
    """KL(p || uniform) over the last dim (K categories), from log-probabilities."""
    return math.log(log_p.shape[-1]) - entropy(log_p)


def free_bits(value, threshold: float):
    """max(threshold, value): the value's gradient passes only where it exceeds the threshold."""
    return value.clamp(min=threshold)


def flip_gradient(value, where):
    """The same value, with its gradient negated where `where` is true (the sign quirk)."""
    return torch.where(where, 2 * value.detach() - value, value)


def final_cluster_terms(log_posterior, kl_x, config: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The final objective's conditional prior, z-prior and its weighted loss, per example,
    from log p(z | x_j, w_j) (M, B, K) and the KLs to the K components (M, B, K).
    Correct gradient: the z-prior as max(lambda, value) per example.
    `sign_quirk`, the Torch code exactly (version2 main.lua L241-245): one gate for the batch,
    open when the batch-mean z-prior exceeds lambda; then the z-prior has its gradient and the
    conditional prior's gradient through the responsibilities (only) is negated; closed, the
    z-prior gives no gradient and nothing is negated."""
    responsibilities = log_posterior.exp()
    z_prior = kl_to_uniform(log_posterior).mean(0)
    if config["sign_quirk"]:
        gate = z_prior.mean() > config["lambda_threshold"]
        responsibilities = flip_gradient(responsibilities, gate)
        z_loss = torch.where(gate, z_prior, z_prior.detach())
    else:
        z_loss = free_bits(z_prior, config["lambda_threshold"])
    return (responsibilities * kl_x).sum(-1).mean(0), z_prior, z_loss * config["cv_weight"]


# Networks -------------------------------------------------------------------------------

def _block(layer: nn.Module, features: int, dims: int) -> nn.Sequential:
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims](features)
    return nn.Sequential(layer, norm, nn.ReLU())


def conv_encoder(channels: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(_block(nn.Conv2d(channels, 16, 6), 16, 2), _block(nn.Conv2d(16, 32, 6), 32, 2),
                         _block(nn.Conv2d(32, 64, 4, stride=2, padding=1), 64, 2),
                         _block(nn.Conv2d(64, hidden, 9), hidden, 2), nn.Flatten())


def conv_decoder(x_dim: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(_block(nn.Linear(x_dim, hidden), hidden, 1), nn.Unflatten(1, (hidden, 1, 1)),
                         _block(nn.ConvTranspose2d(hidden, 64, 9), 64, 2),
                         _block(nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), 32, 2),
                         _block(nn.ConvTranspose2d(32, 16, 6), 16, 2), nn.ConvTranspose2d(16, out_channels, 6))


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear + BN + ReLU between consecutive sizes, the last layer plain linear."""
    layers = [_block(nn.Linear(a, b), b, 1) for a, b in zip(sizes[:-2], sizes[1:-1])]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class GMVAE(nn.Module):
    def __init__(self, shape: tuple[int, ...], config: dict, k: int):
        super().__init__()
        self.shape, self.k, self.config = shape, k, config
        self.x_dim, h = config["x_dim"], config["hidden"]
        gaussian = config["likelihood"] == "gaussian"
        if config["architecture"] == "conv":
            self.encoder = conv_encoder(shape[0], h)
            self.decoder = nn.Sequential(conv_decoder(self.x_dim, h, shape[0] * (1 + gaussian)), nn.Flatten())
        else:
            d = int(np.prod(shape))
            self.encoder = nn.Sequential(nn.Flatten(), _block(nn.Linear(d, h), h, 1), _block(nn.Linear(h, h), h, 1))
            self.decoder = mlp([self.x_dim, h, h, d * (1 + gaussian)])
        self.x_head = nn.Linear(h, 2 * self.x_dim)
        self.w_head = nn.Linear(h, 2 * config["w_dim"])
        self.z_head = nn.Linear(h, k) if config["objective"] == "v1" else None
        self.prior_net = nn.Sequential(nn.Linear(config["w_dim"], h), nn.Tanh())
        self.prior_mean = nn.Linear(h, k * self.x_dim)
        self.prior_logvar = nn.Linear(h, k * self.x_dim)

    def encode(self, y):
        hidden = self.encoder(y)
        mu_x, logvar_x = self.x_head(hidden).chunk(2, -1)
        mu_w, logvar_w = self.w_head(hidden).chunk(2, -1)
        log_qz = torch.log_softmax(self.z_head(hidden), -1) if self.z_head is not None else None
        return mu_x, logvar_x, mu_w, logvar_w, log_qz

    def prior(self, w):
        """The K mixture components for each w: means and log-variances (..., K, x_dim)."""
        hidden = self.prior_net(w)
        split = (*w.shape[:-1], self.k, self.x_dim)
        return self.prior_mean(hidden).view(split), self.prior_logvar(hidden).view(split)

    def log_likelihood(self, y, x):
        """log p(y | x) per example."""
        out, target = self.decoder(x), y.flatten(1)
        if self.config["likelihood"] == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(-1)
        mean, logvar = out.chunk(2, -1)
        return gaussian_log_density(target, mean, logvar)

    def decode_mean(self, x):
        out = self.decoder(x)
        if self.config["likelihood"] == "bernoulli":
            return torch.sigmoid(out)
        return out.chunk(2, -1)[0]

    def terms(self, y, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The per-example terms of the loss (see the module docstring) and their total."""
        c, m = self.config, self.config["m_samples"]
        mu_x, logvar_x, mu_w, logvar_w, log_qz = self.encode(y)

        def draw(mu, logvar):
            noise = torch.randn((m, *mu.shape), generator=generator, device=mu.device)
            return mu + (0.5 * logvar).exp() * noise
        x, w = draw(mu_x, logvar_x), draw(mu_w, logvar_w)                  # (M, B, D)
        mu_prior, logvar_prior = self.prior(w)                              # (M, B, K, x_dim)
        log_posterior = cluster_log_posterior(x, mu_prior, logvar_prior)    # (M, B, K)
        kl_x = gaussian_kl(mu_x.unsqueeze(-2), logvar_x.unsqueeze(-2), mu_prior, logvar_prior)

        terms = {"recon": -self.log_likelihood(y, x[0]),
                 "w_prior": gaussian_kl(mu_w, logvar_w, torch.zeros_like(mu_w), torch.zeros_like(logvar_w))}
        if c["objective"] == "v1":
            terms["cond_prior"] = (log_qz.exp() * kl_x).sum(-1).mean(0)
            terms["z_prior"] = kl_to_uniform(log_qz)
            terms["consistency"] = entropy(log_posterior).mean(0)
            terms["head_agreement"] = (log_qz.argmax(-1) == log_posterior.exp().mean(0).argmax(-1)).float()
            total = terms["z_prior"] * c["eta"] + terms["consistency"] * c["alpha"]
        else:
            terms["cond_prior"], terms["z_prior"], total = final_cluster_terms(log_posterior, kl_x, c)
        terms["loss"] = terms["recon"] + terms["cond_prior"] + terms["w_prior"] + total
        terms["cluster"] = log_posterior.exp().mean(0).argmax(-1)
        return terms

    @torch.no_grad()
    def readout(self, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log q(z | y) of the v1 head (None for final), log p(z | x, w) at the posterior means
        of x and w, and the posterior mean of x."""
        mu_x, _, mu_w, _, log_qz = self.encode(y)
        return log_qz, cluster_log_posterior(mu_x, *self.prior(mu_w)), mu_x

    @torch.no_grad()
    def generate(self, n_random: int, generator: torch.Generator) -> torch.Tensor:
        """Per cluster: decoded mu_k(w) for w = 0, then for n_random draws of w; in [0, 1]."""
        w_dim = self.prior_net[0].in_features
        noise = torch.randn((n_random, w_dim), generator=generator, device=self.prior_mean.weight.device)
        w = torch.cat([torch.zeros_like(noise[:1]), noise])                  # (1 + n, w_dim)
        means = self.prior(w)[0].transpose(0, 1).reshape(-1, self.x_dim)    # cluster-major
        images = torch.cat([self.decode_mean(chunk) for chunk in means.split(READOUT_BATCH)])
        return images.clamp(0, 1).view(-1, *self.shape)


# The method -----------------------------------------------------------------------------

def check_config(config: dict, data: RunData) -> None:
    """Every bad setting, named with the valid choices, before anything is built."""
    for key, valid in (("objective", OBJECTIVES), ("architecture", ARCHITECTURES), ("likelihood", LIKELIHOODS)):
        if config[key] not in valid:
            raise ValueError(f"gmvae: unknown {key} '{config[key]}'; valid: {', '.join(valid)}")
    for key in ("m_samples", "x_dim", "w_dim", "hidden", "batch_size", "epochs", "checkpoint_every"):
        if config[key] < 1:
            raise ValueError(f"gmvae: {key} must be at least 1, got {config[key]}")
    if config["sign_quirk"] and config["objective"] != "final":
        raise ValueError("gmvae: sign_quirk concerns the final objective's threshold; set objective: final or sign_quirk: false")
    images = data.dataset.kind == "images"
    if config["architecture"] == "conv" and (not images or data.fit.x.shape[2:] != (28, 28)):
        raise ValueError(f"gmvae: the conv architecture needs C x 28 x 28 images; dataset '{data.dataset.name}' "
                         f"has x of shape {tuple(data.fit.x.shape[1:])}; use architecture: mlp")
    if config["likelihood"] == "bernoulli" and not images:
        raise ValueError(f"gmvae: the Bernoulli likelihood needs grey levels in [0, 1]; dataset "
                         f"'{data.dataset.name}' holds points; use likelihood: gaussian")
    if len(data.fit) < config["batch_size"]:
        raise ValueError(f"gmvae: batch_size {config['batch_size']} is larger than the {len(data.fit)} training examples")


class GMVAEMethod(Method):
    name = "gmvae"
    tracks = ("clustering", "generation")
    budget = "epochs"

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_config(config, data)
        k = config["k"] or data.dataset.n_classes
        if not k:
            raise ValueError(f"dataset '{data.dataset.name}' has no classes; set k in the method config")
        device = run.device
        shape = tuple(data.fit.x.shape[1:]) if data.dataset.kind == "images" else (data.fit.x.shape[1],)

        def tensor(split):
            return torch.from_numpy(flat_features(split)).to(device).view(-1, *shape)
        fit_y = tensor(data.fit)
        score_y = fit_y if data.score is data.fit else tensor(data.score)

        training = Training.start(run, lambda: GMVAE(shape, config, k), config["lr"])
        model, optimiser, generator, start = training.model, training.optimiser, training.generator, training.epoch

        epochs, batch = config["epochs"], config["batch_size"]
        steps = len(fit_y) // batch
        for epoch in run.progress(range(start + 1, epochs + 1), total=epochs - start, desc="gmvae epochs"):
            model.train()
            order = torch.randperm(len(fit_y), generator=generator, device=device)[:steps * batch].view(steps, batch)
            sums, counts = {}, torch.zeros(k, device=device)
            for step, index in enumerate(order):
                terms = model.terms(fit_y[index], generator)
                loss = terms.pop("loss").mean()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"gmvae: loss is {loss.item()} at epoch {epoch}, step {step}")
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                counts += torch.bincount(terms.pop("cluster"), minlength=k)
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach().mean()
            run.log(epoch=epoch, **{name: round(float(s) / steps, 4) for name, s in sums.items()},
                    clusters_used=int((counts > 0).sum()), largest_cluster=round(float(counts.max() / counts.sum()), 4))
            if epoch % config["checkpoint_every"] == 0 or epoch == epochs:
                training.save(run, epoch)

        model.eval()
        head, mixture, embedding = (None if parts[0] is None else torch.cat(parts).cpu().numpy() for parts in zip(*(
            model.readout(chunk) for chunk in score_y.split(READOUT_BATCH))))
        paper = mixture if head is None else head                # v1: the authors' code scores the head
        outputs = {"assignments": paper.argmax(1).astype(np.int64), "probs": np.exp(paper).astype(np.float32),
                   "log_probs": paper.astype(np.float32), "embedding": embedding.astype(np.float32)}
        if head is not None:
            outputs["log_probs_mixture_posterior"] = mixture.astype(np.float32)
        if data.dataset.kind == "images":
            images = model.generate(config["samples_per_cluster"], generator)
            outputs["samples"] = np.rint(images.cpu().numpy() * 255).astype(np.uint8)
            outputs["sample_clusters"] = np.repeat(np.arange(k), 1 + config["samples_per_cluster"])
        return outputs
