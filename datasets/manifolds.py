"""Manifolds: point clouds with known topology, for the topology track (offline).

Each samples 2,000 points of a manifold in its natural coordinates (`sample`, k ≤ 3
dimensions), places them in 10 dimensions by a fixed random map E with orthonormal columns
(`embedding`) and adds isotropic Gaussian noise of standard deviation 0.01:
x = clean @ E.T + noise, so x @ E recovers the clean points up to the noise. Everything is drawn from generators with fixed seeds, so every preparation gives the
same points. The manifest records each one's intrinsic dimension, topology and Betti
numbers.

    circle      unit circle S¹, angle uniform                        b = (1, 1)
    sphere      unit sphere S², uniform (normalised Gaussians)       b = (1, 0, 1)
    torus       T² with radii 1 and 0.4, both angles uniform         b = (1, 2, 1)
    swiss_roll  scikit-learn's make_swiss_roll scaled by 1/10: a
                rolled-up rectangle, contractible                    b = (1,)
"""
from __future__ import annotations

import numpy as np

from datasets.base import Dataset

N_POINTS, AMBIENT_DIM, NOISE = 2000, 10, 0.01


class Manifold(Dataset):
    kind = "points"
    seed: int

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n clean points in the manifold's natural coordinates (n×k, k ≤ 3)."""
        raise NotImplementedError

    def embedding(self, k: int) -> np.ndarray:
        """The fixed AMBIENT_DIM×k map with orthonormal columns that places the points."""
        q, r = np.linalg.qr(np.random.default_rng(self.seed + 1000).standard_normal((AMBIENT_DIM, k)))
        return q * np.sign(np.diag(r))          # a unique choice of signs

    def build(self, workdir):
        rng = np.random.default_rng(self.seed)
        clean = self.sample(N_POINTS, rng)
        x = clean @ self.embedding(clean.shape[1]).T + NOISE * rng.standard_normal((N_POINTS, AMBIENT_DIM))
        return {"all": {"x": x.astype(np.float32)}}


class Circle(Manifold):
    name, seed = "circle", 1
    intrinsic_dim, topology, betti_numbers = 1, "circle S^1", (1, 1)
    source = "generated: datasets/manifolds.py (unit circle in 10-D, noise 0.01)"

    def sample(self, n, rng):
        angle = rng.uniform(0, 2 * np.pi, n)
        return np.stack([np.cos(angle), np.sin(angle)], axis=1)


class Sphere(Manifold):
    name, seed = "sphere", 2
    intrinsic_dim, topology, betti_numbers = 2, "sphere S^2", (1, 0, 1)
    source = "generated: datasets/manifolds.py (unit sphere in 10-D, noise 0.01)"

    def sample(self, n, rng):
        points = rng.standard_normal((n, 3))
        return points / np.linalg.norm(points, axis=1, keepdims=True)


class Torus(Manifold):
    name, seed = "torus", 3
    intrinsic_dim, topology, betti_numbers = 2, "torus T^2", (1, 2, 1)
    source = "generated: datasets/manifolds.py (torus with radii 1 and 0.4 in 10-D, noise 0.01)"
    major, minor = 1.0, 0.4

    def sample(self, n, rng):
        theta, phi = rng.uniform(0, 2 * np.pi, (2, n))
        ring = self.major + self.minor * np.cos(phi)
        return np.stack([ring * np.cos(theta), ring * np.sin(theta), self.minor * np.sin(phi)], axis=1)


class SwissRoll(Manifold):
    name, seed = "swiss_roll", 4
    intrinsic_dim, topology, betti_numbers = 2, "swiss roll (a rolled-up rectangle: contractible)", (1,)
    source = "generated: sklearn.datasets.make_swiss_roll scaled by 1/10, in 10-D, noise 0.01"

    def sample(self, n, rng):
        from sklearn.datasets import make_swiss_roll
        points, _ = make_swiss_roll(n, noise=0.0, random_state=int(rng.integers(2**31)))
        return points / 10
