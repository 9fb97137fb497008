"""The dataset contract: how a dataset is prepared once into arrays and loaded by every run.

A prepared dataset is a directory `data/<name>/` holding one `.npy` file per split and
array (`<split>.x.npy`, `<split>.labels.npy`, `<split>.factors.npy`) and a `manifest.json`
with the sha256 of every file, the shapes and dtypes, the split sizes and the sources. The
directory is published by a rename, so a failed preparation leaves nothing that looks done.
The manifest records each file's size and modification stamp too, and carries a seal (the
sha256 of the rest of it). Every load checks the seal and each file's size and stamp (a few
stat calls); a file whose stamp changed is hashed again before it is used, and a difference
stops the load with what differs and the fix (`python -m bench data prepare NAME --force`).
`python -m bench data verify` hashes every file in full.
Arrays are read memory-mapped: large sets never have to fit in memory, and they need not
fit while being prepared either: a dataset may stream its arrays to disk block by block.

Images are uint8 N×C×H×W; point clouds (kind "points") are float32 N×D; labels and
factors are int64 (factors N×F, in the order of `factor_names`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np

from common.files import (IntegrityError, atomic_directory, file_mismatch, file_record, json_text, sha256_file,
                          sha256_json, write_json)
from datasets.download import Downloader, Remote
from datasets.factors import FactorSpace

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
    """Base of every registered dataset. Subclasses set the class attributes and either
    `build` (arrays that fit in memory) or `write` (arrays streamed to disk)."""
    name: ClassVar[str]
    kind: ClassVar[str] = "images"                 # "images" (uint8 N×C×H×W) or "points" (float32 N×D)
    splits: ClassVar[tuple[str, ...]] = ("all",)   # what the split spec "all" joins
    extra_splits: ClassVar[tuple[str, ...]] = ()   # prepared, loaded only when named (STL-10's unlabelled)
    n_classes: ClassVar[int | None] = None
    factor_names: ClassVar[tuple[str, ...]] = ()
    factor_sizes: ClassVar[tuple[int, ...]] = ()
    intrinsic_dim: ClassVar[int | None] = None     # point clouds: dimension of the manifold they sample
    topology: ClassVar[str] = ""                   # point clouds: what the manifold is, e.g. "torus T^2"
    betti_numbers: ClassVar[tuple[int, ...]] = ()  # point clouds: b0, b1, ... of the manifold
    source: ClassVar[str] = ""                     # where the data comes from, for the manifest

    def build(self, workdir: Path) -> dict[str, dict[str, np.ndarray]]:
        """Return {split: {"x": ..., "labels": ..., "factors": ...}} (absent arrays omitted).

        `workdir` is a scratch directory (for extraction), removed afterwards."""
        raise NotImplementedError

    def write(self, staging: Staging) -> None:
        """Write every split's arrays through `staging`. By default this saves what `build`
        returns; datasets too large for memory override it and stream through
        `staging.writer`, and datasets with sources fetch them through `staging.fetch`."""
        for split, named in self.build(staging.scratch).items():
            for array_name, array in named.items():
                staging.save(split, array_name, array)

    # Preparing ---------------------------------------------------------------------------

    def prepare(self, data_dir: str | os.PathLike, force: bool = False, downloader: Downloader | None = None) -> Path:
        """Write the arrays and publish `data_dir/<name>` with its manifest; idempotent.

        Sources are downloaded by `downloader`, by default into `data_dir/downloads/`."""
        data_dir = Path(data_dir)
        target = data_dir / self.name
        if (target / "manifest.json").exists() and not force:
            return target
        downloader = downloader or Downloader(data_dir / "downloads")
        start = time.monotonic()
        with atomic_directory(target) as tmp, tempfile.TemporaryDirectory(dir=data_dir) as scratch:
            staging = Staging(self, tmp, Path(scratch), downloader)
            self.write(staging)
            missing = [s for s in self.splits + self.extra_splits if not (tmp / f"{s}.x.npy").exists()]
            if missing:
                raise ValueError(f"{self.name}: preparing wrote no split {missing}")
            write_json(tmp / "manifest.json", self._manifest(tmp, staging.sources, time.monotonic() - start))
        return target

    def _manifest(self, directory: Path, sources: list[dict], seconds: float) -> dict:
        files = {}
        for path in sorted(directory.glob("*.npy")):
            array = np.load(path, mmap_mode="r")
            files[path.name] = {**file_record(path), "shape": list(array.shape), "dtype": str(array.dtype)}
        split_sizes = {s: files[f"{s}.x.npy"]["shape"][0] for s in self.splits + self.extra_splits}
        manifest = {
            "dataset": self.name, "kind": self.kind, "source": self.source, "sources": sources,
            "splits": split_sizes, "extra_splits": list(self.extra_splits), "n_classes": self.n_classes,
            "factor_names": list(self.factor_names), "factor_sizes": list(self.factor_sizes),
            "intrinsic_dim": self.intrinsic_dim, "topology": self.topology, "betti_numbers": list(self.betti_numbers),
            "files": files, "digest": sha256_json({k: v["sha256"] for k, v in files.items()}),
            "prepare_seconds": round(seconds, 2),
        }
        return {**manifest, "seal": _seal(json_text(manifest))}

    # Loading -----------------------------------------------------------------------------

    def manifest(self, data_dir: str | os.PathLike) -> dict:
        """The prepared dataset's manifest, once the files agree with it (see `differences`);
        raises IntegrityError naming every difference and the fix."""
        manifest, problems = self.differences(data_dir)
        if problems:
            raise IntegrityError(
                f"dataset '{self.name}' does not match its manifest ({Path(data_dir) / self.name / 'manifest.json'}):\n"
                + "".join(f"  - {problem}\n" for problem in problems)
                + f"Nothing was run on it. Prepare it again: `python -m bench data prepare {self.name} --force`")
        return manifest

    def differences(self, data_dir: str | os.PathLike, full: bool = False) -> tuple[dict | None, list[str]]:
        """The manifest and what differs from it on disk ([] when nothing does): the manifest
        against its seal (a hand edit breaks it), each file against its entry by size and stamp
        (hashed again where they differ). `full` hashes every file, and lists the .npy files
        that the manifest does not know."""
        root = Path(data_dir) / self.name
        path = root / "manifest.json"
        if not path.exists():
            raise DatasetNotPrepared(
                f"dataset '{self.name}' is not prepared: {path} does not exist. "
                f"Prepare it with `python -m bench data prepare {self.name}` "
                f"(or let `snakemake` do it).")
        text = path.read_text()
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as error:
            return None, [f"{path} is not valid JSON ({error})"]
        if "seal" not in manifest:
            return manifest, [f"{path} has no seal: prepared by a version before manifests were sealed"]
        found = _seal(text.replace(_seal_line(manifest["seal"]), "", 1))
        if found != manifest["seal"]:
            return manifest, [f"{path} was edited after preparation: its text hashes to {found}, "
                              f"its seal is {manifest['seal']}"]
        problems = [file_mismatch(root / name, record, full) for name, record in manifest["files"].items()]
        if full:
            unknown = [p for p in sorted(root.glob("*.npy")) if p.name not in manifest["files"]]
            problems += [f"{p} is not in the manifest" for p in unknown]
        return manifest, [problem for problem in problems if problem]

    def resolve_split(self, spec: str) -> tuple[str, ...]:
        """"all" means every split of the dataset (not the extra ones); otherwise split names joined by '+'."""
        names = self.splits if spec == "all" else tuple(spec.split("+"))
        valid = self.splits + self.extra_splits
        unknown = [n for n in names if n not in valid]
        if unknown or not names:
            raise ValueError(f"dataset '{self.name}' has no split {'+'.join(unknown) or spec!r}; "
                             f"valid: {', '.join(valid)}, 'all', or names joined by '+'")
        return names

    def split_name(self, spec: str) -> str:
        return "+".join(self.resolve_split(spec)) if len(self.splits + self.extra_splits) > 1 else self.splits[0]

    def load(self, data_dir: str | os.PathLike, spec: str = "all") -> Split:
        """Load a split (memory-mapped where it is a single file), once its files agree with the manifest."""
        files = self.manifest(data_dir)["files"]
        root = Path(data_dir) / self.name
        names = self.resolve_split(spec)
        arrays = {}
        for array_name in ARRAYS:
            parts = [f"{n}.{array_name}.npy" for n in names]
            if all(part in files for part in parts):
                loaded = [np.load(root / part, mmap_mode="r", allow_pickle=False) for part in parts]
                arrays[array_name] = loaded[0] if len(loaded) == 1 else np.concatenate(loaded)
        return Split(name=self.split_name(spec), **arrays)

    def factor_space(self, split: Split) -> FactorSpace:
        """The ground-truth factors of a loaded split, with its images, for the disentanglement metrics."""
        if not self.factor_sizes or split.factors is None:
            raise ValueError(f"dataset '{self.name}' has no ground-truth factors (only datasets that declare "
                             f"factor_sizes have them)")
        return FactorSpace(split.factors, self.factor_sizes, self.factor_names, images=split.x)


def _seal(text: str) -> str:
    """A manifest's seal: the sha256 of its text as written without the seal. The text is
    hashed rather than the parsed manifest re-serialised: a load then costs a few microseconds
    more than one without the check, not tens."""
    return hashlib.sha256(text.encode()).hexdigest()


def _seal_line(seal) -> str:
    """The seal's line in the manifest's text: `json_text` puts the key, sorted, between
    "prepare_seconds" and "source", on a line of its own ending in a comma."""
    return f'  "seal": {json.dumps(seal)},\n'


class Staging:
    """What `Dataset.write` works with: the unpublished directory it fills, a scratch
    directory for extracted archives, and the downloader of its sources."""

    def __init__(self, dataset: Dataset, directory: Path, scratch: Path, downloader: Downloader):
        self.dataset, self.directory, self.scratch, self.downloader = dataset, directory, scratch, downloader
        self.sources: list[dict] = []   # for the manifest: what was fetched, from where, its sha256

    def fetch(self, remote: Remote) -> Path:
        """The verified local copy of a source file (downloaded unless cached)."""
        fetched = self.downloader.fetch(remote)
        self.sources.append({"file": remote.path, "url": fetched.url, "sha256": fetched.sha256})
        return fetched.path

    def add_source(self, file: str, path: Path) -> Path:
        """A source file read in place (a distribution's packaged copy), recorded like a fetched one."""
        self.sources.append({"file": file, "url": path.resolve().as_uri(), "sha256": sha256_file(path)})
        return path

    def save(self, split: str, array_name: str, array: np.ndarray) -> None:
        with self.writer(split, array_name, array.shape, array.dtype) as out:
            out.write(array)

    @contextlib.contextmanager
    def writer(self, split: str, array_name: str, shape: tuple[int, ...], dtype) -> Iterator[ArrayWriter]:
        """An .npy file of known shape, to be written front to back in blocks of rows."""
        dtype = np.dtype(dtype)
        self._check(f"{self.dataset.name}/{split}.{array_name}", array_name, shape, dtype)
        bounds = {"factors": self.dataset.factor_sizes, "labels": (self.dataset.n_classes,)}.get(array_name)
        with ArrayWriter(self.directory / f"{split}.{array_name}.npy", tuple(shape), dtype, bounds) as out:
            yield out

    def _check(self, where: str, array_name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        expected = {"x": (np.uint8, 4) if self.dataset.kind == "images" else (np.float32, 2),
                    "labels": (np.int64, 1), "factors": (np.int64, 2)}.get(array_name)
        if expected is None:
            raise ValueError(f"{where}: unknown array; valid names are {ARRAYS}")
        if (dtype, len(shape)) != (np.dtype(expected[0]), expected[1]):
            raise ValueError(f"{where}: expected dtype {expected[0].__name__} with {expected[1]} dims, "
                             f"got {dtype} with shape {tuple(shape)}")
        if array_name == "factors" and shape[1] != len(self.dataset.factor_sizes):
            raise ValueError(f"{where}: {shape[1]} factor columns for {len(self.dataset.factor_sizes)} factors")


class ArrayWriter:
    """Writes one .npy file front to back, a block of rows at a time, so that memory holds a
    block and never the array. Plain sequential writes rather than a memory map: pages of a
    map that were written stay resident in the process; written file pages do not. The
    file must receive exactly its declared number of rows, or the preparation fails. With
    `bounds` (labels: the number of classes; factors: the factor sizes), every value must
    lie in [0, bound)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, bounds: tuple[int | None, ...] | None):
        self.path, self.shape, self.dtype = path, shape, dtype
        self.bounds = np.asarray(bounds) if bounds and None not in bounds else None
        self.rows = 0
        self.file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.file, header)   # the header np.save writes

    def write(self, block: np.ndarray) -> None:
        if block.dtype != self.dtype or block.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path.name}: block of {block.dtype} {block.shape} for an array of "
                             f"{self.dtype} {self.shape}")
        if self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path.name}: more than the declared {self.shape[0]:,} rows")
        if self.bounds is not None and ((block < 0).any() or (block >= self.bounds).any()):
            raise ValueError(f"{self.path.name}: values outside [0, bound) for bounds {self.bounds.tolist()}")
        np.ascontiguousarray(block).tofile(self.file)
        self.rows += len(block)

    def __enter__(self) -> ArrayWriter:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.file.close()
        if error_type is None and self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name}: {self.rows:,} of the declared {self.shape[0]:,} rows written")
