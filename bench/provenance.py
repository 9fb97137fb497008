"""What a run records about where it came from: code version, packages, machine, resources."""
from __future__ import annotations

import importlib.metadata
import platform
import random
import resource
import subprocess
import sys

import numpy as np

from bench.config import REPO

PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "torch-fidelity", "pandas")


def git_state() -> dict:
    """Commit and dirty flag of the suite's own checkout (None outside a git checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (subprocess.SubprocessError, FileNotFoundError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine() -> dict:
    return {"host": platform.node(), "platform": platform.platform(), "processor": platform.machine()}


def peak_memory_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when a method has imported it) torch."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
