"""Ground-truth factors: sample factor values and find the examples that show them.

The disentanglement metrics sample through this interface, as disentanglement_lib does:
draw factor values (each factor uniformly and independently), then take an example with
exactly those values and look at the method's code for it (or, with the images attached,
at the images themselves: `images_of`)."""
from __future__ import annotations

import numpy as np


class FactorSpace:
    def __init__(self, factors: np.ndarray, sizes: tuple[int, ...], names: tuple[str, ...] = (),
                 images: np.ndarray | None = None):
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != len(sizes):
            raise ValueError(f"factors of shape {factors.shape} do not match {len(sizes)} factor sizes")
        if (factors < 0).any() or (factors >= np.asarray(sizes)).any():
            raise ValueError("factor values must lie in [0, size) for every factor")
        self.factors, self.sizes = factors, tuple(int(s) for s in sizes)
        self.names = tuple(names) or tuple(f"factor{i}" for i in range(len(sizes)))
        if images is not None and len(images) != len(factors):
            raise ValueError(f"{len(images)} images for {len(factors)} rows of factors")
        self.images = images
        keys = np.ravel_multi_index(factors.T, self.sizes)
        self._order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._order]

    @property
    def num_factors(self) -> int:
        return len(self.sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n×F factor values, each factor uniform over its values, independently."""
        return np.stack([rng.integers(size, size=n) for size in self.sizes], axis=1)

    def indices_of(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each row of factor values, the index of an example that has them (a random one
        where several do); an error names a combination that no example has."""
        keys = np.ravel_multi_index(np.asarray(factors, dtype=np.int64).T, self.sizes)
        first = np.searchsorted(self._sorted_keys, keys, side="left")
        count = np.searchsorted(self._sorted_keys, keys, side="right") - first
        if (count == 0).any():
            missing = np.asarray(factors)[np.argmax(count == 0)]
            raise ValueError(f"no example has the factor values {dict(zip(self.names, missing.tolist()))}")
        offset = np.where(count > 1, rng.integers(0, np.iinfo(np.int64).max, size=len(keys)) % np.maximum(count, 1), 0)
        return self._order[first + offset]

    def images_of(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The images of `indices_of(factors, rng)`, one per row of factor values."""
        if self.images is None:
            raise ValueError("this FactorSpace was made without images; pass images= to get them")
        return np.asarray(self.images[self.indices_of(factors, rng)])
