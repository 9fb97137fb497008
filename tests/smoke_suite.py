"""The smoke suite run whole: Snakemake in a working directory of its own, and every run's
numbers. tests/test_pipeline.py and tests/test_slurm.py share one local run per test session
(conftest.py's `local_smoke_run`); tests/test_dvc.py runs it under DVC."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.config import REPO, expand


def snakemake(workdir: Path, *args: str, suite: str = "smoke", env: dict | None = None,
              expect_success: bool = True) -> str:
    """Snakemake on this checkout's Snakefile in `workdir`; its output (stdout and stderr)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               *args, "--config", f"suite={suite}"]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200)
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == expect_success, output[-5000:]
    return output


def run_metrics(results: Path) -> dict:
    """Every smoke run's status and metric values with their specs (NaN as "nan": equal to itself)."""
    values = {}
    for run in expand("smoke"):
        result = json.loads((run.path(results) / "metrics.json").read_text())
        values[run.label()] = (result["status"], {
            name: (entry["spec"], "nan" if entry["value"] != entry["value"] else entry["value"])
            for name, entry in result["metrics"].items()})
    return values


@dataclass(frozen=True)
class SmokeRun:
    path: Path          # the working directory: data/, results/, reports/
    metrics: dict       # run_metrics of the run as it finished, before any test changed it


def run_locally(workdir: Path) -> SmokeRun:
    snakemake(workdir, "--cores", "2")
    return SmokeRun(workdir, run_metrics(workdir / "results"))
