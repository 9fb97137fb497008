"""How long Snakemake takes to plan a suite: the wall time of `snakemake -n --config suite=<suite>`,
start-up, Snakefile and DAG together, which every snakemake command of the suite pays.

Each suite is planned `--repeats` times, each in a new process; prints the median and the
fastest time and the number of jobs planned (what the dry run plans depends on what is already
built under results/). Nothing runs. Prints; asserts nothing.

    .venv/bin/python benchmarks/planning_time.py [--suites paper quick] [--repeats 3]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def plan(suite: str) -> tuple[float, int]:
    """Seconds of one dry run, and its number of jobs (the `total` row of its job stats)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", f"suite={suite}"],
                            cwd=REPO, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    total = re.search(r"^total\s+(\d+)$", result.stdout, re.MULTILINE)
    return seconds, int(total.group(1)) if total else 0          # no table: nothing to do


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=["paper", "quick"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'suite':<8} {'jobs':>6} {'median s':>9} {'min s':>7}")
    for suite in args.suites:
        runs = [plan(suite) for _ in range(args.repeats)]
        times = [seconds for seconds, _ in runs]
        print(f"{suite:<8} {runs[-1][1]:>6} {statistics.median(times):>9.2f} {min(times):>7.2f}")


if __name__ == "__main__":
    main()
