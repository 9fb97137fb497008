"""Peak memory of preparing a large dataset, next to the size of its array.

Writes an MPI3D-shaped archive (N×64×64×3 uint8 in an .npz, written block by block; the
member stored as in the official file, or deflated with --deflate), places it in the
download cache as a manually obtained copy, prepares `mpi3d_toy` through the real code
(verify, stream from the archive, write, hash, publish) and prints the process's peak
resident memory (getrusage) before and after preparing. Preparing streams blocks, so its
peak stays far below the array size.

    .venv/bin/python benchmarks/prepare_peak_memory.py [--n 200000] [--deflate] [--dir DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import datasets  # noqa: E402

IMAGE = (64, 64, 3)
BLOCK = 256


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # Linux: KiB


def write_archive(path: Path, n: int, deflate: bool) -> str:
    """An .npz with one member 'images' (n×64×64×3 uint8), written a block at a time; returns its sha256."""
    compression = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression, compresslevel=1 if deflate else None) as archive, \
            archive.open("images.npy", "w", force_zip64=True) as member:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (n, *IMAGE)}
        np.lib.format.write_array_header_1_0(member, header)
        pattern = np.arange(np.prod(IMAGE), dtype=np.uint32).reshape(IMAGE)
        for start in range(0, n, BLOCK):
            rows = np.arange(start, min(start + BLOCK, n), dtype=np.uint32)
            member.write(((rows[:, None, None, None] * 7 + pattern) % 251).astype(np.uint8).tobytes())
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="images (the real MPI3D-toy has 1,036,800)")
    parser.add_argument("--deflate", action="store_true", help="deflate the member (the official file stores it)")
    parser.add_argument("--dir", help="working directory (default: a temporary one, removed afterwards)")
    args = parser.parse_args()

    root = Path(args.dir or tempfile.mkdtemp(prefix="prepare-peak-memory-"))
    try:
        data_dir = root / "data"
        remote = datasets.get("mpi3d_toy").remote
        placed = data_dir / "downloads" / remote.path
        placed.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        sha256 = write_archive(placed, args.n, args.deflate)
        array_mib = args.n * np.prod(IMAGE) / 2**20
        print(f"archive: {args.n:,} images, {'deflated' if args.deflate else 'stored'}, "
              f"{placed.stat().st_size / 2**20:,.0f} MiB on disk, written in {time.monotonic() - start:.1f} s")
        before = peak_mib()

        downloader = datasets.Downloader(data_dir / "downloads", mirror="http://127.0.0.1:9",   # never reached
                                         checksums={remote.path: f"sha256:{sha256}"}, lock_file=root / "checksums.lock")
        start = time.monotonic()
        datasets.get("mpi3d_toy").prepare(data_dir, downloader=downloader)
        seconds = time.monotonic() - start
        split = datasets.get("mpi3d_toy").load(data_dir)
        assert split.x.shape == (args.n, 3, 64, 64) and int(split.x[-1, 0, 0, 0]) == (args.n - 1) * 7 % 251

        print(f"array:   {split.x.shape} uint8 = {array_mib:,.0f} MiB (+ factors {split.factors.nbytes / 2**20:,.0f} MiB)")
        print(f"prepare: {seconds:.1f} s")
        print(f"peak RSS before preparing: {before:,.0f} MiB")
        print(f"peak RSS after preparing:  {peak_mib():,.0f} MiB  ({peak_mib() / array_mib:.1%} of the array)")
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
