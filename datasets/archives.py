"""Reading downloaded archives without trusting them, and without reading them whole.

Tar archives are extracted only after every member name was checked to stay inside the
destination, and through tarfile's "data" filter (no links out, no devices, no setuid).
Arrays in .npz archives and raw binary files are read a block of rows at a time: np.load
reads an .npz member whole, which for MPI3D (12 GiB) does not fit in memory.
"""
from __future__ import annotations

import contextlib
import math
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

import numpy as np

from common.progress import progress
from datasets.download import SourceError

BLOCK_BYTES = 16 << 20


class UnsafeArchiveError(SourceError):
    pass


def extract_tar(archive: Path, destination: Path, select: Callable[[str], bool] = lambda name: True) -> Path:
    """Extract the members whose names `select` accepts; refuse the archive if any member
    name is absolute or climbs out with '..'."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            parts = PurePosixPath(member.name).parts
            if member.name.startswith(("/", "\\")) or ".." in parts:
                raise UnsafeArchiveError(
                    f"{archive.name}: member {member.name!r} would be written outside the extraction directory; "
                    f"refusing to extract. The archive is corrupt or malicious: delete {archive} and prepare again.")
        try:
            tar.extractall(destination, members=[m for m in members if select(m.name)], filter="data")
        except tarfile.FilterError as error:
            raise UnsafeArchiveError(f"{archive.name}: {error}; refusing to extract. Delete {archive} "
                                     f"and prepare again.") from error
    return destination


def read_rows(f: BinaryIO, n: int, row_shape: tuple[int, ...], dtype: np.dtype, where: str) -> Iterator[np.ndarray]:
    """Yield the n rows stored in `f` from its current position, a block at a time."""
    row_bytes = dtype.itemsize * math.prod(row_shape)
    rows = max(1, BLOCK_BYTES // max(row_bytes, 1))
    for start in progress(range(0, n, rows), desc=f"reading {where}"):
        count = min(rows, n - start)
        data = f.read(count * row_bytes)
        if len(data) != count * row_bytes:
            raise SourceError(f"{where} ends after {start + len(data) // row_bytes:,} of {n:,} rows: it is truncated")
        yield np.frombuffer(data, dtype).reshape((count, *row_shape))


@dataclass
class StoredArray:
    """An array inside an .npz archive, known by its header, read block by block."""
    shape: tuple[int, ...]
    dtype: np.dtype
    file: BinaryIO
    where: str

    def __len__(self) -> int:
        return self.shape[0]

    def blocks(self) -> Iterator[np.ndarray]:
        return read_rows(self.file, self.shape[0], self.shape[1:], self.dtype, self.where)

    def read(self) -> np.ndarray:
        """The whole array (for the small ones: labels, factors)."""
        return np.concatenate(list(self.blocks())) if len(self) else np.empty(self.shape, self.dtype)


@contextlib.contextmanager
def npz_array(path: Path, key: str) -> Iterator[StoredArray]:
    """Open array `key` of an .npz archive (members stored or deflated) for reading in blocks."""
    where = f"{path.name}['{key}']"
    with zipfile.ZipFile(path) as archive:
        if f"{key}.npy" not in archive.namelist():
            keys = [n.removesuffix(".npy") for n in archive.namelist()]
            raise SourceError(f"{path.name} has no array '{key}' (it has {', '.join(keys)}): not the expected file")
        with archive.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise SourceError(f"{where}: unsupported .npy format version {version}")
            shape, fortran_order, dtype = read_header(f)
            if fortran_order or dtype.hasobject:
                raise SourceError(f"{where}: expected a C-ordered array of plain values "
                                  f"(got fortran_order={fortran_order}, dtype {dtype})")
            yield StoredArray(shape, dtype, f, where)
