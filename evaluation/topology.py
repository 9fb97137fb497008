"""Topology metrics of the diffusion-map VAE's evaluation (docs/metrics.md).

    gw            Gromov–Wasserstein discrepancy between the training points and as many
                  generated points: Euclidean distance matrices each divided by its maximum,
                  square loss, uniform weights (POT's `gromov_wasserstein2`). It compares the
                  two sets' shapes only: invariant to rotations, translations and scale.
    bi_lipschitz  local bi-Lipschitz constant of the latent → output map: for each latent point
                  and its k = 100 nearest latent neighbours, the largest of output/latent
                  distance and its inverse; mean and std over points. 1 for an isometry.
                  Two protocols, two specs (`pairs`): random-walk, the VDAE paper's (its
                  notebook scores the last random-walk generation: the sampled z and their
                  decodings), and latent-mean, ours (mu(x) and decoder(mu(x)) of the score split).
                  Neighbours are exact (the notebook's annoy index is approximate) and the
                  notebook's +1e-7 is left out.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import ot
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

CHUNK_POINTS = 256   # points whose neighbours' outputs are gathered at once: bounds memory to 256×k×D
BI_LIPSCHITZ_K = 100


class BiLipschitz(NamedTuple):
    mean: float
    std: float


def gromov_wasserstein(train_points: np.ndarray, generated_points: np.ndarray, *, n: int | None = None,
                       seed: int = 0) -> float:
    """GW discrepancy between two equally large point sets; with `n`, between `n` points drawn
    without replacement from each (the distance matrices are n×n, so a large set needs it)."""
    x, y = _points(train_points), _points(generated_points)
    if n is not None:
        rng = np.random.default_rng(seed)
        if n > min(len(x), len(y)):
            raise ValueError(f"n={n} exceeds the {min(len(x), len(y))} points available")
        x, y = x[rng.choice(len(x), n, replace=False)], y[rng.choice(len(y), n, replace=False)]
    if len(x) != len(y):
        raise ValueError(f"{len(x)} training points but {len(y)} generated points: generate as many points as "
                         "there are training points, or pass n to subsample both")
    weights = ot.unif(len(x))
    return float(ot.gromov.gromov_wasserstein2(_normalised_distances(x), _normalised_distances(y), weights, weights,
                                               loss_fun="square_loss"))


def local_bi_lipschitz(latent: np.ndarray, output: np.ndarray, *, k: int = BI_LIPSCHITZ_K) -> BiLipschitz:
    """Mean and std over latent points z of max over z's k nearest latent neighbours z' of
    max(r, 1/r), r = |f(z) − f(z')| / |z − z'|, where output[i] = f(latent[i])."""
    latent, output = _points(latent), _points(output)
    if len(latent) != len(output):
        raise ValueError(f"{len(latent)} latent points but {len(output)} outputs: "
                         "give the output of every latent point")
    if not 0 < k < len(latent):
        raise ValueError(f"k={k} neighbours need more than k latent points (have {len(latent)})")
    latent_dist, neighbours = NearestNeighbors(n_neighbors=k).fit(latent).kneighbors()   # excludes each point itself
    if (latent_dist == 0).any():
        raise ValueError("duplicate latent points (zero latent distance): the ratio is undefined; remove duplicates")
    per_point = np.concatenate([
        _largest_distortion(output[start:start + CHUNK_POINTS], output[neighbours[start:start + CHUNK_POINTS]],
                            latent_dist[start:start + CHUNK_POINTS])
        for start in range(0, len(latent), CHUNK_POINTS)])
    return BiLipschitz(float(per_point.mean()), float(per_point.std()))


def gw_spec(n: int) -> str:
    """e.g. `gw[max-normalised,square-loss,n=1000]`: n points of each set."""
    return f"gw[max-normalised,square-loss,n={n}]"


def bi_lipschitz_spec(k: int = BI_LIPSCHITZ_K, *, pairs: str) -> str:
    """`bi_lipschitz[k=100,pairs=random-walk]` or `...,pairs=latent-mean]` (the protocols named
    above), for its mean and its std alike."""
    return f"bi_lipschitz[k={k},pairs={pairs}]"


def _largest_distortion(outputs: np.ndarray, neighbour_outputs: np.ndarray, latent_dist: np.ndarray) -> np.ndarray:
    ratio = np.linalg.norm(neighbour_outputs - outputs[:, None], axis=-1) / latent_dist
    with np.errstate(divide="ignore"):
        return np.maximum(ratio, 1 / ratio).max(axis=1)


def _normalised_distances(points: np.ndarray) -> np.ndarray:
    distances = cdist(points, points)
    if distances.max() == 0:
        raise ValueError("all points coincide: the distance matrix cannot be divided by its maximum")
    return distances / distances.max()


def _points(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points.reshape(len(points), -1)   # images or vectors alike: one row per point
