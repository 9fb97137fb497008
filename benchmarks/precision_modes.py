"""fp32 and bf16 side by side, for the throughput benchmarks of the diffusion methods.

Each mode is measured in a process of its own (the script runs itself with `--mode`), so that
its peak memory is its own and no mode warms the allocator or the kernel caches of another;
the table puts the modes next to each other with their ratio to fp32.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch

# name: (precision, channels-last)
MODES = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16+channels-last": ("bf16", True)}
RESULT = "result: "


def add_arguments(parser) -> None:
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--mode", choices=list(MODES), help="measure this mode only, in this process (internal)")


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_mib(device: str) -> float:
    """The process's peak resident memory on CPU (Linux reports KiB); the allocator's peak on CUDA."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(result: dict) -> None:
    """A mode's measurements, for the parent process (one JSON line)."""
    print(RESULT + json.dumps(result), flush=True)


def measure_modes(argv: list[str], modes: list[str]) -> dict[str, dict]:
    """Run this script once per mode; their reported results by mode. A mode the device
    refuses (bf16 where it is not native) is reported with its reason."""
    results = {}
    for mode in modes:
        done = subprocess.run([sys.executable, sys.argv[0], *argv, "--mode", mode], capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
        if done.returncode or not lines:
            results[mode] = {"error": (done.stderr.strip().splitlines() or ["no result"])[-1]}
        else:
            results[mode] = json.loads(lines[-1][len(RESULT):])
        print(f"  {mode}: {results[mode]}", file=sys.stderr, flush=True)
    return results


def print_table(results: dict[str, dict], columns: dict[str, str], rate: str = "images_per_s") -> None:
    """One row per mode: each of `columns` (key: heading) and the rate's ratio to fp32."""
    baseline = results.get("fp32", {}).get(rate)
    widths = [max(len(heading), 10) for heading in columns.values()]
    print(f"{'mode':<20}" + "".join(f"{h:>{w + 2}}" for h, w in zip(columns.values(), widths)) + f"{'vs fp32':>10}")
    for mode, result in results.items():
        if "error" in result:
            print(f"{mode:<20}  not run: {result['error']}")
            continue
        cells = "".join(f"{_cell(result[key]):>{w + 2}}" for key, w in zip(columns, widths))
        ratio = f"{result[rate] / baseline:.2f}x" if baseline else "-"
        print(f"{mode:<20}{cells}{ratio:>10}")


def _cell(value) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else str(value)
