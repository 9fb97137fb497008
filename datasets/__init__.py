"""The dataset registry: every dataset the suite knows, by name.

Entries are "module:Class" strings so that listing and validating names imports nothing
heavy; `get(name)` imports the one asked for. Offline datasets never take a paper dataset's
name. To add a dataset: one module here, one line below."""
from __future__ import annotations

import importlib

from datasets.base import Dataset, DatasetNotPrepared, Split

DATASETS = {
    # offline (bundled or generated)
    "digits": "datasets.digits:Digits",
    "blobs": "datasets.blobs:Blobs",
}

# Paper datasets named by the suites; they become loadable when their module lands.
PAPER_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "cifar100_20", "stl10",
                  "dsprites", "shapes3d", "mpi3d_toy", "cars3d")


def get(name: str) -> Dataset:
    if name not in DATASETS:
        if name in PAPER_DATASETS:
            raise NotImplementedError(
                f"paper dataset '{name}' has no download code yet (see the datasets issue); "
                f"available now: {', '.join(DATASETS)}")
        raise KeyError(f"unknown dataset '{name}'; valid: {', '.join(sorted(DATASETS))}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["DATASETS", "PAPER_DATASETS", "Dataset", "DatasetNotPrepared", "Split", "get"]
