"""Cars3D: 17,568 renders of 183 car models at 4 elevations × 24 azimuths, 128×128
resized to 64×64 (Lanczos, as disentanglement_lib's thumbnail), factors elevation 4,
azimuth 24, object 183.

From Reed et al.'s analogy-making archive, whose `data/cars/*.mat` files hold each model's
images as "im" (128×128×3×24×4: height, width, channel, azimuth, elevation); the rest of
the archive is not extracted. Models are numbered in sorted file-name order, and the images
are laid out in factor order (index = ravel_multi_index of elevation, azimuth, object) as
disentanglement_lib lays them out. The source publishes no checksum: the first download's
sha256 is pinned in datasets/checksums.lock."""
from __future__ import annotations

import math

import numpy as np
import scipy.io
from PIL import Image

from common.progress import progress
from datasets.archives import extract_tar
from datasets.base import Dataset
from datasets.download import Remote, SourceError

ELEVATIONS, AZIMUTHS, SIDE = 4, 24, 64


class Cars3D(Dataset):
    name = "cars3d"
    factor_names = ("elevation", "azimuth", "object")
    factor_sizes = (ELEVATIONS, AZIMUTHS, 183)
    remote = Remote("cars3d/nips2015-analogy-data.tar.gz", ("http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",))
    source = "Reed et al. 2015, Deep Visual Analogy-Making: nips2015-analogy-data.tar.gz, data/cars"

    def write(self, staging):
        root = extract_tar(staging.fetch(self.remote), staging.scratch, select=lambda n: n.startswith("data/cars/"))
        files = sorted((root / "data" / "cars").glob("*.mat"))
        if not 0 < len(files) <= self.factor_sizes[2]:
            raise SourceError(f"nips2015-analogy-data.tar.gz: {len(files)} car models under data/cars, "
                              f"expected {self.factor_sizes[2]}")
        sizes = (ELEVATIONS, AZIMUTHS, len(files))
        x = np.empty((math.prod(sizes), 3, SIDE, SIDE), np.uint8)
        factors = np.stack(np.unravel_index(np.arange(len(x)), sizes), axis=1).astype(np.int64)
        for model, path in enumerate(progress(files, desc="resizing cars3d")):
            images = scipy.io.loadmat(path)["im"]
            if images.shape != (128, 128, 3, AZIMUTHS, ELEVATIONS) or images.dtype != np.uint8:
                raise SourceError(f"{path.name}: 'im' is {images.dtype} {images.shape}, expected uint8 128×128×3×24×4")
            for azimuth in range(AZIMUTHS):
                for elevation in range(ELEVATIONS):
                    small = Image.fromarray(images[:, :, :, azimuth, elevation]).resize((SIDE, SIDE), Image.LANCZOS)
                    x[np.ravel_multi_index((elevation, azimuth, model), sizes)] = np.asarray(small).transpose(2, 0, 1)
        staging.save("all", "x", x)
        staging.save("all", "factors", factors)
