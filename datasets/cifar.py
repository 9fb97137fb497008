"""CIFAR-10 and CIFAR-100: 50,000 train + 10,000 test 32×32 colour images.

One archive each, the python version, with the URLs and md5s of torchvision's CIFAR10 and
CIFAR100. CIFAR-100 has two labelings of the same images, kept apart as two dataset ids:
`cifar100` (100 fine classes) and `cifar100_20` (the archive's 20 coarse superclasses);
both read the one downloaded archive. The batches are pickles: they are unpickled only
from an archive whose checksum matched."""
from __future__ import annotations

import pickle
from typing import ClassVar

import numpy as np

from datasets.archives import extract_tar
from datasets.base import Dataset
from datasets.download import Remote, SourceError


class Cifar10(Dataset):
    name = "cifar10"
    splits = ("train", "test")
    n_classes = 10
    remote: ClassVar[Remote] = Remote("cifar10/cifar-10-python.tar.gz",
                                      ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                                      "md5:c58f30108f718f92721af3b95e74349a")
    folder: ClassVar[str] = "cifar-10-batches-py"
    batches: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    label_key: ClassVar[str] = "labels"
    source = "CIFAR-10 python archive (Krizhevsky 2009)"

    def write(self, staging):
        root = extract_tar(staging.fetch(self.remote), staging.scratch) / self.folder   # checksum verified
        for split, names in self.batches.items():
            batches = []
            for name in names:
                with open(root / name, "rb") as f:
                    batches.append(pickle.load(f, encoding="latin1"))
            x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[self.label_key], dtype=np.int64) for b in batches])
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(labels) != len(x):
                raise SourceError(f"{self.name}: unexpected batch contents (data {x.shape}, {len(labels)} labels)")
            staging.save(split, "x", x.reshape(-1, 3, 32, 32))   # rows are channel-major already
            staging.save(split, "labels", labels)


class Cifar100(Cifar10):
    name = "cifar100"
    n_classes = 100
    remote = Remote("cifar100/cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                    "md5:eb9058c3a382ffc7106e4002c42a8d85")
    folder = "cifar-100-python"
    batches = {"train": ("train",), "test": ("test",)}
    label_key = "fine_labels"
    source = "CIFAR-100 python archive (Krizhevsky 2009), 100 fine labels"


class Cifar100Coarse(Cifar100):
    name = "cifar100_20"
    n_classes = 20
    label_key = "coarse_labels"
    source = "CIFAR-100 python archive (Krizhevsky 2009), 20 coarse superclass labels"
