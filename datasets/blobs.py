"""Isotropic Gaussian blobs: a mixture with known components, for testing clustering code.

Fixed parameters so that every run sees the same points: 1,000 points, 5 components in
10 dimensions, standard deviation 4 (the components overlap: k-means on them reaches ARI ≈ 0.9, not 1), centres drawn in [-10, 10] by scikit-learn's
`make_blobs` with random_state 0."""
from __future__ import annotations

import numpy as np

from datasets.base import Dataset


class Blobs(Dataset):
    name = "blobs"
    kind = "points"
    n_classes = 5
    source = "sklearn.datasets.make_blobs(n_samples=1000, n_features=10, centers=5, cluster_std=4.0, random_state=0)"

    def build(self, workdir):
        from sklearn.datasets import make_blobs
        x, labels = make_blobs(n_samples=1000, n_features=10, centers=self.n_classes, cluster_std=4.0, random_state=0)
        return {"all": {"x": x.astype(np.float32), "labels": labels.astype(np.int64)}}
