"""MNIST and Fashion-MNIST: 60,000 train + 10,000 test 28×28 grey images, 10 classes.

Downloaded as the four gzipped IDX files from the mirrors and with the md5s that
torchvision's MNIST and FashionMNIST classes hold."""
from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np

from datasets.base import Dataset
from datasets.download import Remote, SourceError

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class Mnist(Dataset):
    name = "mnist"
    splits = ("train", "test")
    n_classes = 10
    mirrors: ClassVar[tuple[str, ...]] = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                                          "http://yann.lecun.com/exdb/mnist/")
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    source = "MNIST IDX files (LeCun, Cortes, Burges), torchvision's mirrors"

    def write(self, staging):
        for split, (images, labels) in FILES.items():
            x = read_idx(staging.fetch(self._remote(images)), ndim=3)
            y = read_idx(staging.fetch(self._remote(labels)), ndim=1)
            if len(x) != len(y):
                raise SourceError(f"{self.name}: {len(x)} {split} images but {len(y)} labels")
            staging.save(split, "x", x[:, None])
            staging.save(split, "labels", y.astype(np.int64))

    def _remote(self, filename: str) -> Remote:
        return Remote(f"{self.name}/{filename}", tuple(m + filename for m in self.mirrors), f"md5:{self.md5s[filename]}")


class FashionMnist(Mnist):
    name = "fashion_mnist"
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    md5s = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    source = "Fashion-MNIST IDX files (Zalando Research), torchvision's mirror"


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes: magic (0, 0, type 0x08, ndim), big-endian sizes, data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\0\0\x08" or data[3] != ndim:
        raise SourceError(f"{path.name} is not an IDX file of {ndim}-dimensional unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != math.prod(shape):
        raise SourceError(f"{path.name} holds {array.size:,} bytes of data for shape {shape}")
    return array.reshape(shape)
