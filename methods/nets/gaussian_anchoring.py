"""Dynamic Gaussian Anchoring (DyGA) of Jun et al., "Disentangling Disentangled Representations:
Towards Improved Latent Units via Diffusion Models" (arXiv 2410.23820, WACV 2025).

    .venv/bin/python -m pytest tests/test_gaussian_anchoring.py -q -p no:cacheprovider

Spec: docs/methods/dyga.md. Written from the spec and the paper's description; the authors'
code (youngjun-jun/dis-dis, `ldm/modules/gaussian/DyGA.py`) was read for facts only.

One Gaussian mixture with full covariances per latent unit, over that unit's D-dimensional
tokens (D = 32 in the paper). `GaussianAnchors.fit(tokens, generator)` fits all of them from
tokens of shape (N, units, D); `anchors.anchor(tokens)` is the forward-pass step. When to fit
(from scratch at the end of every epoch, the first included, on the whole dataset's tokens) is
the training loop's business, not this module's.

Fit, per unit (spec facts):
- normalise the unit's tokens: (x - max) / (max - min + 1e-6), max and min over all of the
  unit's N x D values (a scalar pair per unit). The official code subtracts the max, not the
  min, so normalised tokens lie in [-1, 0]: kept as is.
- when N > 100,000 fit on a random 10% of the tokens (normalisation statistics from all N);
- K = 8 initial components: means = K distinct random tokens, identity covariances, equal
  weights; 30 EM iterations;
- splitting while K < 32: a component splits when the mean distance of its members
  (responsibility > 0.5) to their centroid exceeds 0.5, or at random with probability 0.5; a
  split replaces it by a 2-component mixture fitted by EM (30 iterations, initial means = 2
  random members, identity covariances, equal weights) on its members. The official loop
  (`split_bookkeeping: official`, the default; `split_as_official`) counts *splits* against its
  limit of 3, so after a first round with three or more splits it stops (K about 12-16), unless
  a split leaves every component narrow (then that split does not count, and rounds go on);
- prune the components whose total responsibility is below 10; then 30 more EM iterations.

Anchoring (the forward pass, spec facts): c_q = the mean of the most responsible component of
each token (hard assignment); lambda = 0.1 exp(-mean |(c - c_q) / (c + 1e-6)|), one scalar per
batch (the mean runs over batch, units and token dimensions); c <- lambda c_q + (1 - lambda) c.
c_q (a hard assignment) carries no gradient; lambda is differentiable, as in the official
forward pass (no no_grad there; the spec's "through (1 - lambda) c only" was wrong). Where a
token entry is exactly 0 (the token MLPs end in a ReLU) |(c - c_q) / (c + 1e-6)| is ~1e6 and
lambda ~0, in the official code too: the training loop logs lambda.

Which space the means live in (our reading; the official code is inconsistent here):
the mixtures are fitted, and store their means, in the normalised space. At anchoring time a
token is normalised with the max and min stored at fit time, assigned there, and the chosen
mean is mapped back to token space, c_q = mean * (max - min + 1e-6) + max, so that c, c_q and
the mixing all live in token space. The official code instead normalises each training batch
with that batch's own max and min and then mixes the normalised-space mean with the raw token
(c and c_q in different spaces); we keep the statistics of the fit and one space.

Other deviations and readings, each small (all ours unless marked):
- Covariance regulariser: `reg_covar` (1e-6) times the identity is added to every covariance
  the M-step computes, so that a component with fewer members than dimensions (tokens of one
  unit lie near a one-dimensional curve) stays positive definite. The official code adds 1e-6
  in the E-step only, and gives a component whose covariance fails to factor log-density -inf;
  ours raises an error naming the unit instead (it cannot happen with the regulariser).
- Empty components: the M-step divides by (mass + 10 * machine epsilon), as scikit-learn does.
- Splitting: `split_bookkeeping: rounds` (ours, kept for comparison) runs up to `split_limit`
  rounds on one E-step each, splits every chosen component, and weighs a child by its parent's
  weight times its own (it reaches up to 32 components where the official loop stops at about
  12-16). In both, the random draw is made for every component (the official one only where
  the spread test fails: the same distribution); in the official bookkeeping a round that
  splits nothing ends the loop (the official one would go round again), and an empty
  component's spread is 0 (the official NaN keeps a round from ending early).
- The spread of a component is its members' mean distance to the members' centroid (the
  official `calculate_density_measure`), which the spec words as "to its mean".
- A component with fewer than 2 members is never split (as the authors' code).
- Pruning keeps at least the heaviest component, so that a unit never ends with none.
- Arithmetic in float64 (the mixtures are stored in float64); anchored tokens keep the dtype
  of the input.
- Every random draw (initial means, subsamples, random splits, split initialisations) comes
  from the torch.Generator passed to `fit`, unit by unit in order, so a fit is a function of
  the tokens and the generator's state.

Cost: a fit is O(iterations x N x K x D^2) per unit; one unit of 11,520 tokens of 32
dimensions takes 10-20 s on one CPU thread, so a CPU run with 20 units may lower
`subsample_above` to fit on a subsample. In 32 dimensions a cluster of a few hundred tokens
split into sub-components with fewer members than dimensions does not always settle in 30
iterations: a component may be left straddling two clusters (the procedure's, not fixed here).

The fitted mixtures travel in a checkpoint as `state_dict()` (tensors only, loadable with
torch.load(weights_only=True)): per unit means, covariances and weights padded to the largest K,
the number of components, and the normalisation statistics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

NORMALISE_EPS = 1e-6          # the official normalisation's denominator term
RELATIVE_EPS = 1e-6           # lambda's (c + 1e-6)
CHUNK_ROWS = 4096             # rows per E-step chunk of one unit: bounds memory to K x CHUNK_ROWS x D
SPLIT_BOOKKEEPING = ("official", "rounds")
ASSIGN_ROWS = 512             # tokens per assignment chunk of all units: U x K x ASSIGN_ROWS x D


@dataclass(frozen=True)
class AnchoringSettings:
    """The fit's hyperparameters; the defaults are the spec's (the official code's)."""
    initial_components: int = 8
    max_components: int = 32
    em_iterations: int = 30
    split_limit: int = 3              # the official loop's limit on splits (ours: on rounds); see split_components
    split_bookkeeping: str = "official"   # official, or rounds (ours)
    split_spread: float = 0.5         # split when members' mean distance to their centroid exceeds this
    split_probability: float = 0.5    # ... or at random with this probability
    min_mass: float = 10.0            # prune components whose total responsibility is below this
    reg_covar: float = 1e-6           # added to every covariance (ours; see the module docstring)
    subsample_above: int = 100_000    # fit on a subsample when a unit has more tokens than this
    subsample_fraction: float = 0.1

    def __post_init__(self):
        for name in ("initial_components", "max_components", "em_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"gaussian anchoring: {name} must be at least 1, got {getattr(self, name)}")
        if self.split_limit < 0 or self.min_mass < 0 or self.reg_covar <= 0:
            raise ValueError("gaussian anchoring: split_limit and min_mass must be at least 0, reg_covar positive")
        if self.split_bookkeeping not in SPLIT_BOOKKEEPING:
            raise ValueError(f"gaussian anchoring: unknown split_bookkeeping '{self.split_bookkeeping}'; "
                             f"valid: {', '.join(SPLIT_BOOKKEEPING)}")
        if not 0 <= self.split_probability <= 1 or not 0 < self.subsample_fraction <= 1:
            raise ValueError("gaussian anchoring: split_probability must lie in [0, 1], subsample_fraction in (0, 1]")
        if self.max_components < self.initial_components:
            raise ValueError(f"gaussian anchoring: max_components {self.max_components} is below "
                             f"initial_components {self.initial_components}")

    @classmethod
    def from_config(cls, config: dict, prefix: str = "dyga_") -> AnchoringSettings:
        """The settings named `prefix + field` in a method's config; absent ones keep the spec's value."""
        return cls(**{f.name: config[prefix + f.name] for f in fields(cls) if prefix + f.name in config})


# One mixture ------------------------------------------------------------------------------

@dataclass
class Mixture:
    """K full-covariance Gaussians in D dimensions: means (K, D), covariances (K, D, D), weights (K,)."""
    means: torch.Tensor
    covariances: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return len(self.weights)

    def select(self, keep: torch.Tensor) -> Mixture:
        weights = self.weights[keep]
        return Mixture(self.means[keep], self.covariances[keep], weights / weights.sum())


def initial_mixture(x: torch.Tensor, k: int, generator: torch.Generator) -> Mixture:
    """Means = k distinct random points of x, identity covariances, equal weights."""
    if len(x) < k:
        raise ValueError(f"gaussian anchoring: {len(x)} points cannot seed {k} components")
    pick = torch.randperm(len(x), generator=generator, device=generator.device)[:k].to(x.device)
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return Mixture(x[pick].clone(), eye.repeat(k, 1, 1), torch.full((k,), 1.0 / k, dtype=x.dtype, device=x.device))


def precision_factors(covariances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P with P P^T = Sigma^-1 (P = L^-T for Sigma = L L^T), and log det Sigma, batched over
    the leading dimensions: log N(x | mu, Sigma) = -(|x P - mu P|^2 + log det Sigma + D log 2 pi) / 2."""
    chol, info = torch.linalg.cholesky_ex(covariances)
    if info.any():
        raise torch.linalg.LinAlgError("gaussian anchoring: a covariance is not positive definite; raise reg_covar")
    eye = torch.eye(covariances.shape[-1], dtype=covariances.dtype, device=covariances.device).expand_as(covariances)
    factor = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)
    return factor, 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def log_joint(x: torch.Tensor, mixture: Mixture) -> torch.Tensor:
    """log pi_k + log N(x_n | mu_k, Sigma_k), shape (N, K): one matrix product per chunk of rows."""
    k, d = mixture.means.shape
    factor, log_det = precision_factors(mixture.covariances)
    shift = (mixture.means.unsqueeze(1) @ factor).squeeze(1)                          # (K, D)
    factor_all = factor.permute(1, 0, 2).reshape(d, k * d)
    constant = mixture.weights.log() - 0.5 * (log_det + d * math.log(2 * math.pi))
    return torch.cat([constant - 0.5 * ((chunk @ factor_all).view(len(chunk), k, d) - shift).pow(2).sum(-1)
                      for chunk in x.split(CHUNK_ROWS)])


def responsibilities(x: torch.Tensor, mixture: Mixture) -> torch.Tensor:
    return torch.softmax(log_joint(x, mixture), dim=1)


def m_step(x: torch.Tensor, resp: torch.Tensor, reg_covar: float) -> Mixture:
    """Weighted means, covariances (second moment minus the mean's outer product: float64
    keeps this exact enough next to reg_covar) plus reg_covar I, and weights."""
    d, k = x.shape[1], resp.shape[1]
    mass = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
    means = resp.T @ x / mass[:, None]
    second = x.new_zeros(k * d, d)
    for rows, weights in zip(x.split(CHUNK_ROWS), resp.split(CHUNK_ROWS)):
        second += (weights.unsqueeze(-1) * rows.unsqueeze(1)).reshape(len(rows), k * d).T @ rows
    covariances = second.view(k, d, d) / mass[:, None, None] - means.unsqueeze(-1) * means.unsqueeze(-2)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return Mixture(means, covariances + reg_covar * eye, mass / mass.sum())


def em(x: torch.Tensor, mixture: Mixture, iterations: int, reg_covar: float) -> Mixture:
    for _ in range(iterations):
        mixture = m_step(x, responsibilities(x, mixture), reg_covar)
    return mixture


def member_spread(x: torch.Tensor, resp: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each component's members (responsibility > 0.5) and their mean distance to their centroid
    (0 for a component with no members)."""
    members = [x[resp[:, k] > 0.5] for k in range(resp.shape[1])]
    spread = torch.stack([(m - m.mean(0)).norm(dim=1).mean() if len(m) else x.new_zeros(()) for m in members])
    return members, spread


def split_in_two(members: torch.Tensor, generator: torch.Generator, settings: AnchoringSettings) -> Mixture:
    """The 2-component fit that replaces a split component: EM from 2 random members."""
    return em(members, initial_mixture(members, 2, generator), settings.em_iterations, settings.reg_covar)


def chosen_for_split(spread: torch.Tensor, generator: torch.Generator, settings: AnchoringSettings) -> torch.Tensor:
    """The components that are too wide or drawn at random (a bool per component)."""
    coin = torch.rand(len(spread), generator=generator, device=generator.device).to(spread.device)
    return (spread > settings.split_spread) | (coin < settings.split_probability)


def split_components(x: torch.Tensor, mixture: Mixture, generator: torch.Generator,
                     settings: AnchoringSettings) -> Mixture:
    """Replace too wide, or randomly drawn, components by 2-component fits on their members,
    with the official bookkeeping or ours (`settings.split_bookkeeping`)."""
    split = split_as_official if settings.split_bookkeeping == "official" else split_in_rounds
    return split(x, mixture, generator, settings)


def split_as_official(x: torch.Tensor, mixture: Mixture, generator: torch.Generator,
                      settings: AnchoringSettings) -> Mixture:
    """The official loop: rounds while fewer than `split_limit` splits are done and K <
    max_components; in a round, the chosen indices are taken in turn from the mixture as it
    changes (a split deletes the component and appends its halves at half weight, then all
    weights are renormalised); after each split the round ends early when every component's
    spread is within split_spread, and only a split that does not end it counts. Ours: a round
    that splits nothing ends the loop (the official one would go round again)."""
    splits = 0
    while splits < settings.split_limit and len(mixture) < settings.max_components:
        split_any, resp = False, responsibilities(x, mixture)         # resp always of the current mixture
        for k in chosen_for_split(member_spread(x, resp)[1], generator, settings).nonzero().flatten().tolist():
            members = x[resp[:, k] > 0.5]
            if len(members) < 2:
                continue
            halves, keep = split_in_two(members, generator, settings), torch.arange(len(mixture), device=x.device) != k
            weights = torch.cat([mixture.weights[keep], halves.weights / 2])
            mixture = Mixture(torch.cat([mixture.means[keep], halves.means]),
                              torch.cat([mixture.covariances[keep], halves.covariances]), weights / weights.sum())
            split_any, resp = True, responsibilities(x, mixture)
            if (member_spread(x, resp)[1] <= settings.split_spread).all():
                break
            splits += 1
        if not split_any:
            break
    return mixture


def split_in_rounds(x: torch.Tensor, mixture: Mixture, generator: torch.Generator,
                    settings: AnchoringSettings) -> Mixture:
    """Ours: up to `split_limit` rounds, while K < max_components, each on one E-step of the
    mixture at the round's start: every chosen component is replaced by its halves (in order,
    until K reaches max_components), a child weighing its parent's weight times its own."""
    for _ in range(settings.split_limit):
        if len(mixture) >= settings.max_components:
            break
        members, spread = member_spread(x, responsibilities(x, mixture))
        chosen = chosen_for_split(spread, generator, settings)
        if not chosen.any():
            break
        parts, size = [], len(mixture)
        for k in range(len(mixture)):
            whole = Mixture(mixture.means[k:k + 1], mixture.covariances[k:k + 1], mixture.weights[k:k + 1])
            if chosen[k] and len(members[k]) >= 2 and size < settings.max_components:
                halves = split_in_two(members[k], generator, settings)
                whole = Mixture(halves.means, halves.covariances, mixture.weights[k] * halves.weights)
                size += 1
            parts.append(whole)
        mixture = Mixture(*(torch.cat(tensors) for tensors in zip(*((p.means, p.covariances, p.weights) for p in parts))))
    return mixture


def prune_components(x: torch.Tensor, mixture: Mixture, min_mass: float) -> Mixture:
    """Drop the components whose total responsibility over x is below min_mass (the heaviest
    always stays); the remaining weights are renormalised."""
    mass = responsibilities(x, mixture).sum(0)
    keep = mass >= min_mass
    keep[mass.argmax()] = True
    return mixture.select(keep)


def fit_mixture(x: torch.Tensor, generator: torch.Generator, settings: AnchoringSettings) -> Mixture:
    """The whole DyGA fit of one unit's (normalised) points."""
    mixture = em(x, initial_mixture(x, settings.initial_components, generator), settings.em_iterations,
                 settings.reg_covar)
    mixture = split_components(x, mixture, generator, settings)
    mixture = prune_components(x, mixture, settings.min_mass)
    return em(x, mixture, settings.em_iterations, settings.reg_covar)


# Every unit --------------------------------------------------------------------------------

class GaussianAnchors:
    """The fitted mixtures of all latent units, padded to the largest K (padding components
    have weight 0 and identity covariance, so they are never chosen)."""

    def __init__(self, means: torch.Tensor, covariances: torch.Tensor, weights: torch.Tensor,
                 n_components: torch.Tensor, token_max: torch.Tensor, token_min: torch.Tensor):
        self.means, self.covariances, self.weights = means, covariances, weights       # (U, K, D), (U, K, D, D), (U, K)
        self.n_components, self.token_max, self.token_min = n_components, token_max, token_min   # (U,) each
        self._factor, log_det = precision_factors(covariances)                         # (U, K, D, D), (U, K)
        self._shift = (means.unsqueeze(-2) @ self._factor).squeeze(-2)                 # (U, K, D)
        self._constant = weights.log() - 0.5 * (log_det + means.shape[-1] * math.log(2 * math.pi))

    @property
    def units(self) -> int:
        return len(self.n_components)

    @classmethod
    def fit(cls, tokens: torch.Tensor, generator: torch.Generator,
            settings: AnchoringSettings = AnchoringSettings()) -> GaussianAnchors:
        """Fit one mixture per unit on tokens (N, units, D)."""
        if tokens.ndim != 3:
            raise ValueError(f"gaussian anchoring: tokens must be (N, units, D), got shape {tuple(tokens.shape)}")
        tokens = tokens.detach().to(torch.float64)
        n = len(tokens)
        mixtures, maxima, minima = [], [], []
        for unit in range(tokens.shape[1]):
            x = tokens[:, unit]
            top, bottom = x.max(), x.min()
            x = (x - top) / (top - bottom + NORMALISE_EPS)
            if n > settings.subsample_above:
                pick = torch.randperm(n, generator=generator, device=generator.device)
                x = x[pick[:int(n * settings.subsample_fraction)].to(x.device)]
            try:
                mixtures.append(fit_mixture(x, generator, settings))
            except torch.linalg.LinAlgError as error:
                raise torch.linalg.LinAlgError(f"unit {unit}: {error}") from None
            maxima.append(top)
            minima.append(bottom)
        return cls.from_mixtures(mixtures, torch.stack(maxima), torch.stack(minima))

    @classmethod
    def from_mixtures(cls, mixtures: list[Mixture], token_max: torch.Tensor, token_min: torch.Tensor) -> GaussianAnchors:
        """Pad per-unit mixtures (means in the normalised space) into one GaussianAnchors."""
        k = max(len(m) for m in mixtures)
        d = mixtures[0].means.shape[1]
        like = mixtures[0].means
        means = like.new_zeros(len(mixtures), k, d)
        covariances = torch.eye(d, dtype=like.dtype, device=like.device).repeat(len(mixtures), k, 1, 1)
        weights = like.new_zeros(len(mixtures), k)
        for unit, m in enumerate(mixtures):
            means[unit, :len(m)], covariances[unit, :len(m)], weights[unit, :len(m)] = m.means, m.covariances, m.weights
        counts = torch.tensor([len(m) for m in mixtures], dtype=torch.int64, device=like.device)
        return cls(means, covariances, weights, counts, token_max.to(like), token_min.to(like))

    def mixture(self, unit: int) -> Mixture:
        k = int(self.n_components[unit])
        return Mixture(self.means[unit, :k], self.covariances[unit, :k], self.weights[unit, :k])

    # From token space to the normalised space and back (statistics of the fit).

    def _scale(self) -> torch.Tensor:
        return (self.token_max - self.token_min + NORMALISE_EPS)[:, None]

    def normalise(self, tokens: torch.Tensor) -> torch.Tensor:
        """(x - max) / (max - min + 1e-6) per unit, with the fit's max and min; (N, U, D) float64."""
        return (tokens.detach().to(self.means) - self.token_max[:, None]) / self._scale()

    def denormalise(self, points: torch.Tensor) -> torch.Tensor:
        """The inverse of `normalise`, for points (..., U, D)."""
        return points * self._scale() + self.token_max[:, None]

    def token_means(self) -> torch.Tensor:
        """Every component's mean mapped back to token space, (U, K, D) (padding included)."""
        return self.denormalise(self.means.transpose(0, 1)).transpose(0, 1)

    def assign(self, tokens: torch.Tensor) -> torch.Tensor:
        """The most responsible component of every token, (N, U) int64."""
        parts = []
        for x in self.normalise(tokens).split(ASSIGN_ROWS):                           # (n, U, D)
            y = x.transpose(0, 1).unsqueeze(1) @ self._factor - self._shift.unsqueeze(2)   # (U, K, n, D)
            parts.append((self._constant.unsqueeze(-1) - 0.5 * y.pow(2).sum(-1)).argmax(1).T)
        return torch.cat(parts)

    def anchor_points(self, tokens: torch.Tensor) -> torch.Tensor:
        """c_q: the mean of each token's component, in token space, detached, (N, U, D)."""
        index = self.assign(tokens)                                                    # (N, U)
        return self.token_means()[torch.arange(self.units, device=index.device), index].to(tokens)

    def anchor(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lambda c_q + (1 - lambda) c, lambda): the gradient reaches the tokens through lambda
        and (1 - lambda) c, as in the official forward pass (c_q, a hard assignment, has none)."""
        target = self.anchor_points(tokens)
        lam = 0.1 * torch.exp(-((tokens - target) / (tokens + RELATIVE_EPS)).abs().mean())
        return lam * target + (1 - lam) * tokens, lam

    # Checkpoints: tensors only.

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"means": self.means, "covariances": self.covariances, "weights": self.weights,
                "n_components": self.n_components, "token_max": self.token_max, "token_min": self.token_min}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> GaussianAnchors:
        return cls(**{key: state[key] for key in ("means", "covariances", "weights", "n_components",
                                                  "token_max", "token_min")})

    def to(self, device: str | torch.device) -> GaussianAnchors:
        return GaussianAnchors.from_state_dict({key: value.to(device) for key, value in self.state_dict().items()})
