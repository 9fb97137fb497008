"""MNIST and Fashion-MNIST: 60,000 train + 10,000 test 28×28 grey images, 10 classes.

Downloaded as the four gzipped IDX files from the mirrors and with the md5s that
torchvision's MNIST and FashionMNIST classes hold.

Fashion-MNIST is also packaged by Debian (`apt-get install dataset-fashion-mnist`, the
upstream repository at 55506a9), which puts the same four files under
/usr/share/datasets/fashion-mnist/. Where they are present they are read in place and nothing
is downloaded. Debian recompressed them, so the md5s of the .gz files differ from the
published ones; what is verified, for either source, is the sha256 of each decompressed file
(`contents`, measured on Debian's copy; its md5s agree with the upstream files').
"""
from __future__ import annotations

import gzip
import hashlib
import math
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np

from datasets.base import Dataset
from datasets.download import ChecksumError, Remote, SourceError

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
    contents: ClassVar[dict[str, str]] = {}        # .gz file -> sha256 of its decompressed bytes
    system_copy: ClassVar[Path | None] = None      # a distribution's packaged copy of the .gz files
    system_package: ClassVar[str] = ""            # the package that installs it
    source = "MNIST IDX files (LeCun, Cortes, Burges), torchvision's mirrors"

    def write(self, staging):
        for split, (images, labels) in FILES.items():
            x = parse_idx(self._read(staging, images), images, ndim=3)
            y = parse_idx(self._read(staging, labels), labels, ndim=1)
            if len(x) != len(y):
                raise SourceError(f"{self.name}: {len(x)} {split} images but {len(y)} labels")
            staging.save(split, "x", x[:, None])
            staging.save(split, "labels", y.astype(np.int64))

    def _read(self, staging, filename: str) -> bytes:
        """The decompressed bytes of `filename`: from the system copy where it has the file,
        else downloaded (or taken from the download cache); checked against `contents`."""
        local = self.system_copy / filename if self.system_copy else None
        if local is not None and local.is_file():
            path, origin = staging.add_source(f"{self.name}/{filename}", local), str(local)
        else:
            try:
                path = staging.fetch(self._remote(filename))
            except SourceError as error:
                if not self.system_package:
                    raise
                raise SourceError(f"{error} Or install Debian's package {self.system_package} "
                                  f"(`apt-get install {self.system_package}`), which puts the files in "
                                  f"{self.system_copy}; preparation reads them there.") from error
            origin = str(path)
        data = gunzip(path)
        expected = self.contents.get(filename)
        found = hashlib.sha256(data).hexdigest() if expected is not None else None
        if found != expected:
            raise ChecksumError(
                f"{filename} ({origin}) decompresses to {len(data):,} bytes of sha256 "
                f"{found}, expected {expected}: not {self.name}'s file. "
                f"Replace it with a good copy (reinstall {self.system_package or 'it'}, or delete it "
                f"to download it afresh) and prepare again.")
        return data

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
    contents = {
        "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }
    system_copy = Path("/usr/share/datasets/fashion-mnist")
    system_package = "dataset-fashion-mnist"
    source = ("Fashion-MNIST IDX files (Zalando Research): Debian's dataset-fashion-mnist where installed, "
              "else torchvision's mirror")


def gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as error:
        raise SourceError(f"{path} is not a complete gzip file ({error})") from error


def parse_idx(data: bytes, name: str, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes: magic (0, 0, type 0x08, ndim), big-endian sizes, data."""
    if len(data) < 4 + 4 * ndim or data[:3] != b"\0\0\x08" or data[3] != ndim:
        raise SourceError(f"{name} is not an IDX file of {ndim}-dimensional unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != math.prod(shape):
        raise SourceError(f"{name} holds {array.size:,} bytes of data for shape {shape}")
    return array.reshape(shape)
