"""Diffusion maps, exact and learned (SpectralNet), for the diffusion-map VAE (methods/vdae.py).

Spec: docs/methods/vdae.md, stage 1 and its corrections from the authors' code
(lihenryhfl/SpectralVAEGAN, `vdae/costs.py` knn_affinity, `vdae/util.py` get_scale, `vdae/layer.py`
Orthonorm), and the SpectralNet paper (Shaham et al., arXiv 1801.01587). Written by us.

Affinity (`gaussian_affinity`, as the code's knn_affinity): a Gaussian kernel over each point's
`n_nbrs` nearest points, *the point itself among them* (so n_nbrs = 2, the paper's, is one real
neighbour), symmetrised:

    W_ij = exp(-|x_i - x_j|^2 / (2 sigma^2))   for j among i's n_nbrs nearest (j = i included), else 0
    W    = (W + W^T) / 2

`affinity_scale` gives sigma:
- global (the code's): one scale for all points, the median over a random sample of the
  distance of each sampled point to its `scale_neighbour`-th nearest sampled point, the point
  itself counted first (`global_scale`; scale_neighbour = 2: the nearest other point);
- local (the spec's first reading; an ablation switch): sigma_i = the distance of point i to its
  `scale_neighbour`-th nearest point within the batch, itself counted (the code's local_scale
  branch, which SpectralNet's VDAE setting does not take).
The diagonal (W_ii = 1) adds nothing to the spectral loss; in the exact diffusion map it is
a self-loop of the random walk.

Exact diffusion map (`diffusion_map`, dense, for small data): the Markov matrix
P = D^-1 W (D the degrees) has right eigenvectors v_0 = const (eigenvalue 1), v_1, v_2, ...;
they are computed from the symmetric D^-1/2 W D^-1/2. The map is x_i -> (lambda_l^t v_l(i)),
l = 1..d: the top non-trivial eigenvectors scaled by their eigenvalues to the power t.

SpectralNet (`SpectralNet`): an MLP (`hidden` ReLU units, then d tanh units) followed by the
orthonormalisation layer (`Orthonorm`): over a batch Y (B x d), with G = Y^T Y = L L^T its
Cholesky factor, the output is Y L^-T sqrt(B), so that output^T output / B = I. In training
mode every batch sets the factor; in eval mode the last training batch's factor is used, as
SpectralNet does. Loss (`spectral_loss`): sum_ij W_ij |psi_i - psi_j|^2 / (2B) over the
batch's affinity. Its minimiser under the constraint spans the smallest eigenvectors of the
graph Laplacian D - W, which approximate those of P (exactly when the degrees are equal; in
the limit of many points both converge to the Laplace-Beltrami eigenfunctions).

Differences from the authors' code:
- The batch is centred before the Cholesky factor (and the last training batch's mean is kept
  for eval mode with the factor) (ours). Without it the loss's minimiser contains the constant
  vector, which the diffusion map drops (its eigenvalue is 1 for every point): centring makes
  the outputs orthogonal to it, so psi spans the top *non-trivial* eigenvectors.
- The factor comes from the training batch itself (ours); the code feeds a second, separate
  random batch to the orthonormalisation layer.
- The Cholesky jitter is 1e-6 I (ours; the code's epsilon is 1e-7).
- SpectralNet's output is not scaled by eigenvalue powers (as the authors' code: the learned
  map gives no eigenvalues); its coordinates have unit variance over a batch.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from methods.nets.precision import full_precision

CHOLESKY_JITTER = 1e-6


def gaussian_affinity(x: torch.Tensor, n_nbrs: int, scale: float | torch.Tensor) -> torch.Tensor:
    """The symmetrised Gaussian affinity W (B x B, dense) of the rows of x over each row's
    `n_nbrs` nearest rows, itself included; `scale` is one sigma or a column of per-row sigmas."""
    if not 1 <= n_nbrs <= len(x):
        raise ValueError(f"affinity needs 1 <= n_nbrs ({n_nbrs}) <= points ({len(x)})")
    distances = torch.cdist(x, x)
    nearest, index = distances.topk(n_nbrs, largest=False)
    weights = torch.zeros_like(distances).scatter_(1, index, torch.exp(-nearest ** 2 / (2 * scale ** 2)))
    return (weights + weights.T) / 2


def global_scale(x: torch.Tensor, scale_neighbour: int, sample_size: int, generator: torch.Generator) -> float:
    """The code's get_scale: the median, over a random sample of `sample_size` rows, of each
    sampled row's distance to its `scale_neighbour`-th nearest sampled row (itself the first).
    Drawn without replacement: the code's draw with replacement, as large as the data (full
    batches), gives most rows a duplicate at distance 0 and the median scale 0."""
    sample = x[torch.randperm(len(x), generator=generator, device=x.device)[:sample_size]]
    return float(torch.cdist(sample, sample).topk(scale_neighbour, largest=False).values[:, -1].median())


def local_scale(x: torch.Tensor, scale_neighbour: int) -> torch.Tensor:
    """Each row's distance to its `scale_neighbour`-th nearest row (itself the first), as a column."""
    return torch.cdist(x, x).topk(scale_neighbour, largest=False).values[:, -1:].clamp_min(1e-12)


def diffusion_map(x: np.ndarray, d: int, t: float, n_nbrs: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The exact diffusion map of the rows of x: (n x d coordinates lambda^t v, the d eigenvalues)."""
    weights = gaussian_affinity(torch.from_numpy(np.array(x, dtype=np.float64)), n_nbrs, scale).numpy()
    root = np.sqrt(weights.sum(1))                                               # > 0: every point is its own neighbour
    values, vectors = np.linalg.eigh(weights / root[:, None] / root[None, :])   # ascending
    values, vectors = values[::-1][1:d + 1], vectors[:, ::-1][:, 1:d + 1]        # drop the trivial top one
    right = vectors / root[:, None]                                              # eigenvectors of D^-1 W
    right /= np.linalg.norm(right, axis=0)
    return right * values ** t, values


def spectral_loss(psi: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_ij W_ij |psi_i - psi_j|^2 / (2B) for a symmetric W, computed as the Laplacian's
    quadratic form (sum_i D_ii |psi_i|^2 - sum_ij W_ij psi_i . psi_j) / B: one B x B by B x d
    product, no B x B distance matrix, and a gradient free of scattered sums (which are not
    deterministic on several CPU threads)."""
    return ((weights.sum(1) * (psi ** 2).sum(1)).sum() - (psi * (weights @ psi)).sum()) / len(psi)


class Orthonorm(nn.Module):
    """Centres a batch and whitens it by the inverse Cholesky factor of its Gram matrix:
    output^T output / B = I. Eval mode reuses the last training batch's mean and factor."""

    def __init__(self, d: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("weights", torch.eye(d))

    @full_precision                     # a Cholesky factor of a Gram matrix: no bf16
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = y.mean(0)
            centred = y - mean
            gram = centred.T @ centred + CHOLESKY_JITTER * torch.eye(y.shape[1], device=y.device, dtype=y.dtype)
            factor = torch.linalg.cholesky(gram)
            weights = torch.linalg.solve_triangular(factor, torch.eye(*gram.shape, device=y.device, dtype=y.dtype),
                                                    upper=False).T * len(y) ** 0.5
            self.mean.copy_(mean.detach())
            self.weights.copy_(weights.detach())
            return centred @ weights
        return (y - self.mean) @ self.weights


class SpectralNet(nn.Module):
    """x -> MLP (hidden ReLU, d tanh) -> Orthonorm."""

    def __init__(self, in_dim: int, hidden: int, d: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, d), nn.Tanh())
        self.orthonorm = Orthonorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.orthonorm(self.net(x))
