"""Atomic file writing, hashing and integrity records.

Every file a pipeline step writes appears whole or not at all. A file that a later step
reads (a prepared array, a cached first stage) is written with a record of its sha256, size
and modification stamp; the reader compares the size and stamp (cheap, every read) and
hashes the file again only when they differ, so that a changed file is never used silently."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    On any exception the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_file_beside(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_beside(path, ".tmp", os.mkdir)   # 0777 less the umask, unlike mkdtemp's 0700
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def new_file_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty file with a hidden, unused name beside `path`, to be renamed onto it.

    Not tempfile.mkstemp, whose files are 0600 whatever the umask (the rename keeps that, and
    colleagues sharing the directory could not read the results). This file is created as
    open() creates any, 0666 less the umask (or as a default ACL says), so the umask is never
    read or set: setting it to read it would be process-wide and race with other threads."""
    return _new_beside(path, suffix, _create_file)


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _new_beside(path: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    """Make a new name beside `path` with `create`, which raises FileExistsError where the
    name is taken (another writer's), as exclusive creation does."""
    for _ in range(100):
        new = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
        with contextlib.suppress(FileExistsError):
            create(new)
            return new
    raise FileExistsError(f"no unused temporary name beside {path}")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json_text(obj))


def json_text(obj) -> str:
    """The text that `write_json` writes: indented by two spaces, keys sorted."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class IntegrityError(RuntimeError):
    """A file that an earlier step wrote no longer matches the record written with it."""


def file_record(path: str | os.PathLike) -> dict:
    """What a later reader checks the file at `path` against: its sha256, size and stamp."""
    stat = os.stat(path)
    return {"sha256": sha256_file(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_mismatch(path: str | os.PathLike, record: dict, full: bool = False) -> str | None:
    """What differs between the file at `path` and its `record`, or None when nothing does.

    The size and stamp are compared; a file whose stamp differs (touched, copied, edited in
    place, truncated) is hashed, and so is every file when `full`."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return f"{path} is missing (recorded sha256 {record['sha256']})"
    if not full and stat.st_size == record["size"] and stat.st_mtime_ns == record["mtime_ns"]:
        return None
    path = Path(path)
    digest = sha256_file(path) if full else _sha256_of(path, stat)
    if digest == record["sha256"]:
        return None
    sizes = f"{stat.st_size:,} bytes, recorded {record['size']:,}" if stat.st_size != record["size"] else "same size"
    return f"{path} has sha256 {digest}, recorded {record['sha256']} ({sizes})"


@contextlib.contextmanager
def recorded_path(path: str | os.PathLike) -> Iterator[Path]:
    """`atomic_path`, and the file's record written beside it (`<name>.record.json`), which
    `check_recorded` verifies before the file is read."""
    path = Path(path)
    with atomic_path(path) as tmp:
        yield tmp
        write_json(record_path(path), file_record(tmp))   # a rename keeps the stamp recorded here


def check_recorded(path: str | os.PathLike, fix: str) -> None:
    """Raise IntegrityError, naming the file, both digests and `fix`, unless the file at
    `path` is the one that `recorded_path` wrote."""
    record = record_path(path)
    if not record.exists():
        raise IntegrityError(f"{path} has no record of its sha256 ({record.name}: written by an older version, "
                             f"or its write was interrupted); {fix}")
    problem = file_mismatch(path, json.loads(record.read_text()))
    if problem:
        raise IntegrityError(f"{problem}; {fix}")


def record_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".record.json")


# Digests of files hashed in this process, by everything that changes when a file is written
# (ctime included: restoring the mtime by hand changes it): a file whose stamp differs from its
# record is hashed once per process, not at every read.
_hashed: dict[tuple, str] = {}


def _sha256_of(path: Path, stat: os.stat_result) -> str:
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_file(path)
    return _hashed[key]


def sha256_json(obj) -> str:
    """Digest of a JSON-able object that does not depend on key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()
