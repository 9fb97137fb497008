"""What checking prepared data against its manifest costs a load, next to a load without it.

Prepares `digits` and a synthetic dataset of one large image array (1 GiB by default, written
block by block) under a temporary directory, and times `Dataset.load` as it is now (the seal
and every file's size and stamp checked) against `Dataset.load` of datasets/base.py at
`--baseline` (default: the commit before the checks, which read the manifest and mapped the
files). Both load memory-mapped, so a load is a few file opens; the time of reading the
arrays once, as a run does, is printed beside them. Then the slow paths: a load after a file
was touched (its stamp changed, so it is hashed again) and `data verify` (every file hashed).
Prints; asserts nothing. The temporary directory is removed afterwards.

    .venv/bin/python benchmarks/data_load_overhead.py [--gib 1] [--repeats 200] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import datasets  # noqa: E402
from datasets.base import Dataset  # noqa: E402

BLOCK = 1 << 14                                # rows per block written
IMAGE = (1, 32, 32)                            # 1 KiB per row


class Synthetic(Dataset):
    """One split of `rows` uint8 images of 1 KiB, streamed to disk: the array never in memory."""
    name = "synthetic"
    rows = 0

    def write(self, staging):
        rng = np.random.default_rng(0)
        with staging.writer("all", "x", (self.rows, *IMAGE), np.uint8) as out:
            for start in range(0, self.rows, BLOCK):
                out.write(rng.integers(0, 256, (min(BLOCK, self.rows - start), *IMAGE), dtype=np.uint8))


def baseline_dataset_class(revision: str):
    """datasets/base.py's Dataset at `revision`, imported from git as a module of its own."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:datasets/base.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("baseline_base", loader=None)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)   # dataclasses look it up
    exec(compile(source, f"{revision}:datasets/base.py", "exec"), module.__dict__)
    return module.Dataset


def best_seconds(functions, repeats: int) -> list[float]:
    """The least of `repeats` timings of each function, taken in turn so that the machine's
    other load falls on all of them alike: the cost of the work itself."""
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def read_all(split) -> int:
    return int(sum(int(np.asarray(array[start:start + BLOCK]).sum(dtype=np.int64))
                   for array in (split.x, split.labels) if array is not None
                   for start in range(0, len(array), BLOCK)))


def measure(dataset: Dataset, baseline: Dataset, data_dir: Path, repeats: int) -> None:
    now, before = best_seconds([lambda: dataset.load(data_dir), lambda: baseline.load(data_dir)], repeats)
    [read] = best_seconds([lambda: read_all(dataset.load(data_dir))], 3)
    size = sum(p.stat().st_size for p in (data_dir / dataset.name).glob("*.npy"))
    print(f"{dataset.name} ({size / 2**20:,.1f} MiB in {len(list((data_dir / dataset.name).glob('*.npy')))} files)")
    print(f"  load, checked (now):     {now * 1e6:9.1f} us")
    print(f"  load, baseline:          {before * 1e6:9.1f} us   overhead {now - before:+.6f} s "
          f"({(now / before - 1) * 100:+.1f}% of a load)")
    print(f"  load and read it once:   {read:9.4f} s    overhead {(now - before) / read * 100:+.3f}% of that")
    path = data_dir / dataset.name / "all.x.npy"
    os.utime(path)                                                  # same bytes, a new stamp: hashed again
    start = time.perf_counter()
    dataset.load(data_dir)
    print(f"  load after a touch:      {time.perf_counter() - start:9.4f} s    (all.x.npy hashed once per process)")
    start = time.perf_counter()
    problems = dataset.differences(data_dir, full=True)[1]
    print(f"  data verify (full hash): {time.perf_counter() - start:9.4f} s    {'OK' if not problems else problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the synthetic array")
    parser.add_argument("--repeats", type=int, default=200, help="timings of each load (the least is printed)")
    parser.add_argument("--baseline", default="50b1625", help="the revision of datasets/base.py to compare with")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary data directory goes")
    args = parser.parse_args()
    Baseline = baseline_dataset_class(args.baseline)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="data-load-overhead-") as tmp:
        data_dir = Path(tmp)
        digits = datasets.get("digits")
        digits.prepare(data_dir)
        measure(digits, type("BaselineDigits", (Baseline,), {"name": "digits"})(), data_dir, args.repeats)
        synthetic = Synthetic()
        synthetic.rows = int(args.gib * 2**30) // int(np.prod(IMAGE))
        start = time.perf_counter()
        synthetic.prepare(data_dir)
        print(f"synthetic: prepared in {time.perf_counter() - start:.1f} s")
        measure(synthetic, type("BaselineSynthetic", (Baseline,), {"name": "synthetic"})(), data_dir, args.repeats)


if __name__ == "__main__":
    main()
