"""3D Shapes: 480,000 64×64 colour renders of a shape in a room, every combination of six
factors exactly once (floor hue 10, wall hue 10, object hue 10, scale 8, shape 4,
orientation 15).

The HDF5 file stores the factor *values*; they are mapped to indices on the grids of the
dataset's description (hues 0, 0.1, ..., 0.9; scale 0.75–1.25 in 8 steps; shape 0–3;
orientation −30°–30° in 15 steps), and an off-grid value is an error. The source publishes
no checksum: the first download's sha256 is pinned in datasets/checksums.lock. Images
are streamed from the file to disk in blocks (needs h5py)."""
from __future__ import annotations

import numpy as np

from common.progress import progress
from datasets.base import Dataset
from datasets.download import Remote, SourceError

BLOCK = 4096
GRIDS = (np.arange(10) / 10, np.arange(10) / 10, np.arange(10) / 10,
         np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15))


class Shapes3D(Dataset):
    name = "shapes3d"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = (10, 10, 10, 8, 4, 15)
    remote = Remote("shapes3d/3dshapes.h5", ("https://storage.googleapis.com/3d-shapes/3dshapes.h5",))
    source = "deepmind/3d-shapes 3dshapes.h5 (Burgess & Kim 2018)"

    def write(self, staging):
        import h5py
        with h5py.File(staging.fetch(self.remote), "r") as f:
            images, values = f["images"], f["labels"][()]
            n = len(images)
            if images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8 or values.shape != (n, 6):
                raise SourceError(f"3dshapes.h5: images {images.shape} {images.dtype}, labels {values.shape}")
            with staging.writer("all", "x", (n, 3, 64, 64), np.uint8) as out:
                for start in progress(range(0, n, BLOCK), desc="reading 3dshapes.h5"):
                    out.write(images[start:start + BLOCK].transpose(0, 3, 1, 2))
        staging.save("all", "factors", np.stack([grid_index(values[:, i], grid, name) for i, (grid, name)
                                                 in enumerate(zip(GRIDS, self.factor_names))], axis=1))


def grid_index(values: np.ndarray, grid: np.ndarray, name: str) -> np.ndarray:
    """The index of each value on `grid`; values off the grid are an error."""
    index = np.abs(values[:, None] - grid[None, :]).argmin(axis=1)
    if not np.allclose(grid[index], values, atol=1e-4):
        bad = values[~np.isclose(grid[index], values, atol=1e-4)][0]
        raise SourceError(f"3dshapes.h5: {name} value {bad} is not on its grid {np.round(grid, 4).tolist()}")
    return index.astype(np.int64)
