"""What a run records about where it came from: code version, packages, machine, resources."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import random
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.config import REPO

PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "torch-fidelity", "pandas")


def git(*args: str, repo: Path = REPO) -> str:
    """The output of a git command in `repo` (the suite's own checkout by default)."""
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, timeout=10).stdout.rstrip()


def git_state() -> dict:
    """Commit and dirty flag of the suite's own checkout (None outside a git checkout)."""
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (subprocess.SubprocessError, FileNotFoundError):
        return {"commit": None, "dirty": None}


def origin() -> dict:
    """Where a result comes from: the checkout's state, the package versions and the machine."""
    return {"git": git_state(), "packages": package_versions(), "machine": machine()}


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine() -> dict:
    return {"host": platform.node(), "platform": platform.platform(), "processor": platform.machine(),
            "cpu_model": cpu_model()}


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    except OSError:
        return platform.processor() or None


# What a network's arithmetic depends on besides the code and the seed: the kernels torch picks
# for this CPU (ATEN_CPU_CAPABILITY overrides them; so do oneDNN's and MKL's own switches), the
# threads, and the BLAS libraries. Two runs that differ here may give other numbers.
KERNEL_SWITCHES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                   "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")


def compute(with_torch: bool) -> dict:
    """The kernels and libraries this process computes with (torch's only when `with_torch`:
    importing it costs a second, and a run without a network does not use it)."""
    from threadpoolctl import threadpool_info
    record = {"switches": {name: os.environ[name] for name in KERNEL_SWITCHES if name in os.environ},
              "numpy_blas": [{key: pool.get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
                             for pool in threadpool_info() if pool.get("user_api") == "blas"]}
    if with_torch:
        import torch
        libraries = re.findall(r"^\s*- (Intel\(R\) [^\n]*?(?:Math Kernel Library|MKL-DNN)[^\n]*?)(?: \(Git Hash.*)?$",
                               torch.__config__.show(), flags=re.M)
        record.update(torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                      torch_threads=torch.get_num_threads(), torch_libraries=libraries)
    return record


def peak_memory_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when a method has imported it) torch."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
