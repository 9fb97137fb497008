"""dSprites: 737,280 binary 64×64 images of 2D shapes, every combination of five factors
exactly once, in factor order (shape 3, scale 6, orientation 40, x 32, y 32).

The archive's sixth factor, colour, is constant (one value) and is dropped, as
disentanglement_lib does. Pixels are stored 0/255 (the archive's 0/1 scaled), so that
dSprites reads like every other uint8 image set. The source publishes no checksum: the
first download's sha256 is pinned in datasets/checksums.lock. The images (3 GiB unpacked)
are streamed from the archive to disk in blocks."""
from __future__ import annotations

import numpy as np

from datasets.archives import npz_array
from datasets.base import Dataset
from datasets.download import Remote, SourceError

FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


class DSprites(Dataset):
    name = "dsprites"
    factor_names = ("shape", "scale", "orientation", "x", "y")
    factor_sizes = (3, 6, 40, 32, 32)
    remote = Remote(f"dsprites/{FILE}", (f"https://github.com/deepmind/dsprites-dataset/raw/master/{FILE}",))
    source = f"deepmind/dsprites-dataset {FILE} (Matthey et al. 2017)"

    def write(self, staging):
        path = staging.fetch(self.remote)
        with npz_array(path, "latents_classes") as latents:
            classes = latents.read().astype(np.int64)
        if classes.ndim != 2 or classes.shape[1] != 6 or (classes[:, 0] != 0).any():
            raise SourceError(f"{FILE}: expected latents_classes of N×6 with a constant colour, got {classes.shape}")
        with npz_array(path, "imgs") as images, \
                staging.writer("all", "x", (len(images), 1, 64, 64), np.uint8) as out:
            if images.shape[1:] != (64, 64) or len(images) != len(classes):
                raise SourceError(f"{FILE}: imgs of shape {images.shape} for {len(classes)} latents")
            for block in images.blocks():
                out.write(block[:, None] * np.uint8(255))
        staging.save("all", "factors", classes[:, 1:])
