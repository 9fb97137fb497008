"""Progress for long loops: a tqdm bar on a terminal, plain log lines otherwise (logs, SLURM)."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", reports: int = 10) -> Iterator[T]:
    """Iterate over `items`, showing progress.

    On a terminal this is a tqdm bar; otherwise about `reports` plain lines over the whole
    loop (one per item when the total is unknown), so that log files stay short."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, leave=False)
        return
    start = time.monotonic()
    reported = 0
    for i, item in enumerate(items, 1):
        yield item
        share = i * reports // total if total else i
        if share > reported:
            reported = share
            shown = f"{i}/{total}" if total else f"{i}"
            print(f"{desc}: {shown} ({time.monotonic() - start:.1f}s)", file=sys.stderr, flush=True)


def progress_bytes(blocks: Iterable[bytes], total: int | None, desc: str = "", reports: int = 10) -> Iterator[bytes]:
    """Pass byte blocks through, showing how many bytes went by (downloads, checksums).

    On a terminal a tqdm bar in bytes; otherwise about `reports` plain lines, or one line per
    100 MiB when the total is unknown."""
    if sys.stderr.isatty():
        with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False) as bar:
            for block in blocks:
                bar.update(len(block))
                yield block
        return
    start, done, reported = time.monotonic(), 0, 0
    for block in blocks:
        done += len(block)
        yield block
        share = done * reports // total if total else done // (100 << 20)
        if share > reported:
            reported = share
            shown = f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB" if total else f"{done / 2**20:.1f} MiB"
            print(f"{desc}: {shown} ({time.monotonic() - start:.1f}s)", file=sys.stderr, flush=True)
