"""The dataset contract: how a dataset is prepared once into arrays and loaded by every run.

A prepared dataset is a directory `data/<name>/` holding one `.npy` file per split and
array (`<split>.x.npy`, `<split>.labels.npy`, `<split>.factors.npy`) and a `manifest.json`
with the sha256 of every file, the shapes and dtypes, the split sizes and the source. The
directory is published by a rename, so a failed preparation leaves nothing that looks done.
Arrays are read memory-mapped: large sets never have to fit in memory.

Images are uint8 N×C×H×W; point clouds (kind "points") are float32 N×D.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from common.files import atomic_directory, sha256_file, sha256_json, write_json

ARRAYS = ("x", "labels", "factors")


class DatasetNotPrepared(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Split:
    """The arrays of one split (or of several joined, e.g. "train+test")."""
    name: str
    x: np.ndarray
    labels: np.ndarray | None = None
    factors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)


class Dataset:
    """Base of every registered dataset. Subclasses set the class attributes and `build`."""
    name: ClassVar[str]
    kind: ClassVar[str] = "images"                 # "images" (uint8 N×C×H×W) or "points" (float32 N×D)
    splits: ClassVar[tuple[str, ...]] = ("all",)
    n_classes: ClassVar[int | None] = None
    factor_names: ClassVar[tuple[str, ...]] = ()
    factor_sizes: ClassVar[tuple[int, ...]] = ()
    source: ClassVar[str] = ""                     # where the data comes from, for the manifest

    def build(self, workdir: Path) -> dict[str, dict[str, np.ndarray]]:
        """Return {split: {"x": ..., "labels": ..., "factors": ...}} (absent arrays omitted).

        `workdir` is a scratch directory (for extraction), removed afterwards."""
        raise NotImplementedError

    # Preparing ---------------------------------------------------------------------------

    def prepare(self, data_dir: str | os.PathLike, force: bool = False) -> Path:
        """Build the arrays and publish `data_dir/<name>` with its manifest; idempotent."""
        target = Path(data_dir) / self.name
        if (target / "manifest.json").exists() and not force:
            return target
        start = time.monotonic()
        with atomic_directory(target) as tmp, tempfile.TemporaryDirectory(dir=data_dir) as scratch:
            arrays = self.build(Path(scratch))
            missing = [s for s in self.splits if s not in arrays]
            if missing:
                raise ValueError(f"{self.name}: build() returned no split {missing}")
            for split, named in arrays.items():
                for array_name, array in named.items():
                    self._check_array(split, array_name, array)
                    np.save(tmp / f"{split}.{array_name}.npy", array, allow_pickle=False)
            write_json(tmp / "manifest.json", self._manifest(tmp, time.monotonic() - start))
        return target

    def _check_array(self, split: str, array_name: str, array: np.ndarray) -> None:
        where = f"{self.name}/{split}.{array_name}"
        if array_name not in ARRAYS:
            raise ValueError(f"{where}: unknown array; valid names are {ARRAYS}")
        if array_name == "x":
            expected = (np.uint8, 4) if self.kind == "images" else (np.float32, 2)
            if (array.dtype, array.ndim) != expected:
                raise ValueError(f"{where}: expected dtype {expected[0].__name__} with {expected[1]} dims, "
                                 f"got {array.dtype} with shape {array.shape}")

    def _manifest(self, directory: Path, seconds: float) -> dict:
        files = {}
        for path in sorted(directory.glob("*.npy")):
            array = np.load(path, mmap_mode="r")
            files[path.name] = {"sha256": sha256_file(path), "shape": list(array.shape), "dtype": str(array.dtype)}
        split_sizes = {s: files[f"{s}.x.npy"]["shape"][0] for s in self.splits}
        return {
            "dataset": self.name, "kind": self.kind, "source": self.source,
            "splits": split_sizes, "n_classes": self.n_classes,
            "factor_names": list(self.factor_names), "factor_sizes": list(self.factor_sizes),
            "files": files, "digest": sha256_json({k: v["sha256"] for k, v in files.items()}),
            "prepare_seconds": round(seconds, 2),
        }

    # Loading -----------------------------------------------------------------------------

    def manifest(self, data_dir: str | os.PathLike) -> dict:
        path = Path(data_dir) / self.name / "manifest.json"
        if not path.exists():
            raise DatasetNotPrepared(
                f"dataset '{self.name}' is not prepared: {path} does not exist. "
                f"Prepare it with `python -m bench data prepare {self.name}` "
                f"(or let `snakemake` do it).")
        return json.loads(path.read_text())

    def resolve_split(self, spec: str) -> tuple[str, ...]:
        """"all" means every split of the dataset; otherwise split names joined by '+'."""
        names = self.splits if spec == "all" else tuple(spec.split("+"))
        unknown = [n for n in names if n not in self.splits]
        if unknown or not names:
            raise ValueError(f"dataset '{self.name}' has no split {'+'.join(unknown) or spec!r}; "
                             f"valid: {', '.join(self.splits)}, 'all', or names joined by '+'")
        return names

    def split_name(self, spec: str) -> str:
        return "+".join(self.resolve_split(spec)) if len(self.splits) > 1 else self.splits[0]

    def load(self, data_dir: str | os.PathLike, spec: str = "all") -> Split:
        """Load a split (memory-mapped where it is a single file)."""
        self.manifest(data_dir)
        root = Path(data_dir) / self.name
        names = self.resolve_split(spec)
        arrays = {}
        for array_name in ARRAYS:
            parts = [root / f"{n}.{array_name}.npy" for n in names]
            if all(p.exists() for p in parts):
                loaded = [np.load(p, mmap_mode="r", allow_pickle=False) for p in parts]
                arrays[array_name] = loaded[0] if len(loaded) == 1 else np.concatenate(loaded)
        return Split(name=self.split_name(spec), **arrays)

