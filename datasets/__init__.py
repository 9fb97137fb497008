"""The dataset registry: every dataset the suite knows, by name.

Entries are "module:Class" strings so that listing and validating names imports nothing
heavy; `get(name)` imports the one asked for. Offline datasets never take a paper dataset's
name. To add a dataset: one module here, one line below."""
from __future__ import annotations

import importlib

from common.files import IntegrityError
from datasets.base import Dataset, DatasetNotPrepared, Split, Staging
from datasets.download import ChecksumError, Downloader, Remote, SourceError

DATASETS = {
    # offline (bundled or generated)
    "digits": "datasets.digits:Digits",
    "blobs": "datasets.blobs:Blobs",
    "sprites": "datasets.sprites:Sprites",
    "circle": "datasets.manifolds:Circle",
    "sphere": "datasets.manifolds:Sphere",
    "torus": "datasets.manifolds:Torus",
    "swiss_roll": "datasets.manifolds:SwissRoll",
    # a real slice of a paper dataset (fetched and verified like one; never its name)
    "mnist10k": "datasets.mnist10k:Mnist10k",
    # paper datasets (downloaded from their canonical sources, verified)
    "mnist": "datasets.mnist:Mnist",
    "fashion_mnist": "datasets.mnist:FashionMnist",
    "cifar10": "datasets.cifar:Cifar10",
    "cifar100": "datasets.cifar:Cifar100",
    "cifar100_20": "datasets.cifar:Cifar100Coarse",
    "stl10": "datasets.stl10:Stl10",
    "dsprites": "datasets.dsprites:DSprites",
    "shapes3d": "datasets.shapes3d:Shapes3D",
    "mpi3d_toy": "datasets.mpi3d:Mpi3dToy",
    "cars3d": "datasets.cars3d:Cars3D",
}

# The paper datasets, by name (the suites' paper runs use them).
PAPER_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "cifar100_20", "stl10",
                  "dsprites", "shapes3d", "mpi3d_toy", "cars3d")


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; valid: {', '.join(sorted(DATASETS))}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["DATASETS", "PAPER_DATASETS", "ChecksumError", "Dataset", "DatasetNotPrepared", "Downloader", "IntegrityError", "Remote",
           "SourceError", "Split", "Staging", "get"]
