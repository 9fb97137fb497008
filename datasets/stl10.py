"""STL-10: 96×96 colour images, 10 classes; 5,000 train and 8,000 test labelled, and
100,000 unlabelled as the extra split "unlabeled" (loaded only when named, e.g.
"train+unlabeled": "all" means the labelled train+test).

The binary archive (URL and md5 of torchvision's STL10) stores each image column-major;
they are transposed to row-major and streamed to disk in blocks (the unlabelled images
alone are 2.6 GiB)."""
from __future__ import annotations

import math

import numpy as np

from datasets.archives import extract_tar, read_rows
from datasets.base import Dataset
from datasets.download import Remote, SourceError

FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin"), "unlabeled": ("unlabeled_X.bin", None)}
IMAGE = (3, 96, 96)


class Stl10(Dataset):
    name = "stl10"
    splits = ("train", "test")
    extra_splits = ("unlabeled",)
    n_classes = 10
    remote = Remote("stl10/stl10_binary.tar.gz", ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                    "md5:91f7769df0f17e558f3565bffb0c7dfb")
    source = "STL-10 binary archive (Coates, Lee, Ng 2011)"

    def write(self, staging):
        root = extract_tar(staging.fetch(self.remote), staging.scratch) / "stl10_binary"
        for split, (images, labels) in FILES.items():
            path = root / images
            n, remainder = divmod(path.stat().st_size, math.prod(IMAGE))
            if remainder:
                raise SourceError(f"{images} is {path.stat().st_size:,} bytes, not a whole number of 96×96×3 images")
            with open(path, "rb") as f, staging.writer(split, "x", (n, *IMAGE), np.uint8) as out:
                for block in read_rows(f, n, IMAGE, np.dtype(np.uint8), images):
                    out.write(block.transpose(0, 1, 3, 2))
            if labels:
                y = np.fromfile(root / labels, dtype=np.uint8).astype(np.int64) - 1    # stored 1..10
                if len(y) != n:
                    raise SourceError(f"{labels} holds {len(y):,} labels for {n:,} images")
                staging.save(split, "labels", y)
