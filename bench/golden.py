"""Golden numbers that hold on any machine: `python -m bench golden --suite quick`.

A network's numbers depend on the CPU's kernels: the same seed gives other numbers on another
CPU, or on this one under another kernel path. So the golden numbers of a suite come from its
runs under several kernel paths (the suite's `golden.kernels`), each with at least
`golden.seeds` seeds per group, all from one clean commit:

    results/golden/<commit>/<kernel>/<suite>/...     the runs, one Snakemake run per kernel path
    evaluation/golden/<suite>.csv                    per metric: mean, std, runs, rule, tolerance
    evaluation/golden/<suite>.json                   where they came from: commit, CPU, kernels,
                                                     torch, BLAS, the rule and its false-alarm rate

The rules are evaluation/verdicts.py's: methods without a network (methods.CPU_ONLY) give the
same numbers on every CPU and keep the tight deterministic tolerance, from the suite's own
seeds; every network gets a band from the spread of all its golden runs. Rerunning resumes:
runs already done at this commit are kept.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

import methods
from bench import provenance
from bench.config import REPO, ConfigError, RunId, expand, load_suite
from common.files import write_json, write_text
from evaluation.verdicts import (FAMILY_FALSE_ALARM, GOLDEN_COLUMNS, band_tolerance, golden_tolerance)
from reports.tables import summarise

GOLDEN_DIR = REPO / "evaluation" / "golden"

# Kernel paths this machine can take, as the environment that selects them: what an AVX2-only
# CPU (or one without vector units) would run, for torch's own kernels, oneDNN's and MKL's.
KERNELS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "scalar": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
DETERMINISTIC, SPREAD = "deterministic", "spread"


def golden_path(suite: str) -> Path:
    return GOLDEN_DIR / f"{suite}.csv"


def provenance_path(suite: str) -> Path:
    return GOLDEN_DIR / f"{suite}.json"


def clean_commit(repo: Path = REPO) -> str:
    """HEAD of `repo`, refusing a working tree with uncommitted changes (other than the golden files)."""
    status = provenance.git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!evaluation/golden",
                            repo=repo)
    if status:
        raise ConfigError("golden numbers name the commit they come from, and the working tree has uncommitted "
                          f"changes:\n{status}\ncommit them first")
    return provenance.git("rev-parse", "HEAD", repo=repo)


def make(config: dict, suite: str, cores: str = "all") -> Path:
    """Run the suite under every kernel path of its `golden` block and write its golden files."""
    plan = load_suite(suite).get("golden")
    if not plan:
        raise ConfigError(f"config/suites/{suite}.yaml has no `golden` block (seeds, kernels) to make golden numbers by")
    commit = clean_commit()
    directories = {kernel: Path(config["results_dir"]) / "golden" / commit[:12] / kernel for kernel in plan["kernels"]}
    runs = expand(suite, plan["seeds"])
    for number, (kernel, directory) in enumerate(directories.items(), 1):
        print(f"golden {number}/{len(directories)}: {len(runs)} runs of {suite} under the {kernel} kernel path "
              f"into {directory}", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", cores, "--config",
                   f"suite={suite}", f"data_dir={config['data_dir']}", f"results_dir={directory}",
                   f"reports_dir={directory / 'reports'}", f"min_seeds={plan['seeds']}", "--",
                   str(directory / suite / "summary.csv")]
        subprocess.run(command, env={**os.environ, **KERNELS[kernel]}, check=True)
    summaries = {kernel: pd.read_csv(directory / suite / "summary.csv") for kernel, directory in directories.items()}
    failed = {k: s.loc[s["status"] != "completed", ["dataset", "method", "variant", "seed"]].drop_duplicates()
              for k, s in summaries.items()}
    if any(len(rows) for rows in failed.values()):
        raise RuntimeError("golden runs must all complete; failed: " + "; ".join(
            f"{k}: {r.dataset}/{r.method}/{r.variant}/seed{r.seed}" for k, rows in failed.items()
            for r in rows.itertuples()))
    table, rule = pool(summaries, suite)
    write_text(golden_path(suite), table[GOLDEN_COLUMNS].to_csv(index=False, float_format="%.6g"))
    write_json(provenance_path(suite), {
        "suite": suite, "commit": commit, "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": plan["seeds"], "machine": provenance.machine(), "packages": provenance.package_versions(),
        "kernels": {kernel: {"environment": KERNELS[kernel], "runs": len(runs), "directory": str(directory),
                             **kernels_used(runs, directory)} for kernel, directory in directories.items()},
        "rule": rule})
    return golden_path(suite)


def pool(summaries: dict[str, pd.DataFrame], suite: str) -> tuple[pd.DataFrame, dict]:
    """One golden row per metric from the runs of every kernel path (`summaries`: kernel ->
    summary.csv table, the first kernel the machine's native one), and the rule's parameters."""
    check_seeds = Counter((run.dataset, run.method, run.variant) for run in expand(suite))
    native = next(iter(summaries.values()))
    pooled = pd.concat(summaries.values(), ignore_index=True)
    deterministic = pooled["method"].isin(methods.CPU_ONLY)
    # Methods without a network: the suite's own seeds on one path (the others give the same numbers).
    own = suite_runs_only(native[native["method"].isin(methods.CPU_ONLY)], suite)
    table = pd.concat([summarise(own).assign(rule=DETERMINISTIC),
                       summarise(pooled[~deterministic]).assign(rule=SPREAD)], ignore_index=True)
    table = table.rename(columns={"seeds": "runs"})
    table["check_seeds"] = [check_seeds[key] for key in zip(table["dataset"], table["method"], table["variant"])]
    banded = int(((table["rule"] == SPREAD) & table["mean"].notna()).sum())
    alpha = FAMILY_FALSE_ALARM / max(banded, 1)
    table["tolerance"] = [golden_tolerance(row.std, row.runs) if row.rule == DETERMINISTIC
                          else band_tolerance(row.std, row.runs, row.check_seeds, alpha)
                          for row in table.itertuples()]
    rule = {"family_false_alarm": FAMILY_FALSE_ALARM, "banded_metrics": banded, "per_metric_false_alarm": alpha,
            "statement": "a network's metric is flagged when the mean of the suite's seeds falls outside "
                         "t(runs-1, 1-a) * std * sqrt(1/runs + 1/seeds) of the golden runs' mean, one-sided, "
                         f"a = {FAMILY_FALSE_ALARM} / {banded} banded metrics (Bonferroni: at most "
                         f"{FAMILY_FALSE_ALARM:.0%} chance of any false alarm for the whole suite under normal noise); "
                         "methods without a network: 3 standard errors of the suite's seeds, at least 0.01"}
    return table.sort_values(["dataset", "method", "variant"], kind="stable").reset_index(drop=True), rule


def suite_runs_only(summary: pd.DataFrame, suite: str) -> pd.DataFrame:
    """The rows of the suite's own runs (its seeds, not the golden runs' extra ones)."""
    own = {(run.dataset, run.method, run.variant, run.seed_index) for run in expand(suite)}
    return summary[[key in own for key in zip(summary["dataset"], summary["method"], summary["variant"],
                                              summary["seed"])]]


def kernels_used(runs: list[RunId], results_dir: Path) -> dict:
    """The CPU capabilities and torch versions that the networks among `runs` computed with."""
    capabilities, torches = set(), set()
    for run in runs:
        path = run.path(results_dir) / "run.json"
        if run.method in methods.CPU_ONLY or not path.exists():
            continue
        record = json.loads(path.read_text())
        capabilities.add(record.get("compute", {}).get("torch_cpu_capability") or "unrecorded")
        torches.add(record["packages"].get("torch") or "unrecorded")
    return {"cpu_capabilities": sorted(capabilities), "torch": sorted(torches)}


def compare_machines(suite: str, runs: list[RunId], results_dir: Path) -> str:
    """Whether the current runs computed on the kernels and torch of the golden runs."""
    if not provenance_path(suite).exists():
        return "the golden file records no machines (made before bench/golden.py)"
    golden = json.loads(provenance_path(suite).read_text())["kernels"].values()
    golden_caps = sorted({c for k in golden for c in k["cpu_capabilities"]})
    golden_torch = sorted({t for k in golden for t in k["torch"]})
    now = kernels_used(runs, results_dir)
    if set(now["cpu_capabilities"]) <= set(golden_caps) and set(now["torch"]) <= set(golden_torch):
        return f"same kernels ({', '.join(now['cpu_capabilities']) or 'no network'}) and torch as the golden runs"
    return (f"the comparison crosses machines: these runs computed with {', '.join(now['cpu_capabilities'])} kernels "
            f"and torch {', '.join(now['torch'])}, the golden runs with {', '.join(golden_caps)} and torch "
            f"{', '.join(golden_torch)}")
