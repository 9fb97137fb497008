"""MPI3D-toy: 1,036,800 64×64 colour renders of a robot arm holding an object, every
combination of seven factors exactly once, in factor order (object colour 6, shape 6,
size 2, camera height 3, background colour 3, horizontal axis 40, vertical axis 40).

The archive holds only the images (12 GiB unpacked); the factors are their indices in
factor order, as disentanglement_lib reads them. Images are streamed from the archive to
disk in blocks, so preparing needs far less memory than the array. The source publishes no
checksum: the first download's sha256 is pinned in datasets/checksums.lock."""
from __future__ import annotations

import math

import numpy as np

from datasets.archives import npz_array
from datasets.base import Dataset
from datasets.download import Remote, SourceError


class Mpi3dToy(Dataset):
    name = "mpi3d_toy"
    factor_names = ("object_colour", "object_shape", "object_size", "camera_height", "background_colour",
                    "horizontal_axis", "vertical_axis")
    factor_sizes = (6, 6, 2, 3, 3, 40, 40)
    remote = Remote("mpi3d_toy/mpi3d_toy.npz",
                    ("https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_toy.npz",))
    source = "rr-learning/disentanglement_dataset mpi3d_toy.npz (Gondal et al. 2019)"

    def write(self, staging):
        with npz_array(staging.fetch(self.remote), "images") as images:
            n = len(images)
            if images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8 or n > math.prod(self.factor_sizes):
                raise SourceError(f"mpi3d_toy.npz: images of {images.dtype} {images.shape}, expected uint8 "
                                  f"at most {math.prod(self.factor_sizes):,}×64×64×3 in factor order")
            with staging.writer("all", "x", (n, 3, 64, 64), np.uint8) as out:
                for block in images.blocks():
                    out.write(block.transpose(0, 3, 1, 2))
        staging.save("all", "factors", np.stack(np.unravel_index(np.arange(n), self.factor_sizes), axis=1).astype(np.int64))
