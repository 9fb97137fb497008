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
