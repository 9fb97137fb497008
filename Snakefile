"""The benchmark pipeline: prepare → train → evaluate → aggregate → report.

    snakemake --cores all                          the quick suite (config/config.yaml)
    snakemake --cores all --config suite=smoke     another suite
    snakemake check                                compare with golden and published numbers
    snakemake --report report.html                 a browsable report of the last run

Each rule calls `python -m bench ...`; the same commands run a single step by hand.
"""
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
from bench import config as bench_config

configfile: os.path.join(workflow.basedir, "config", "config.yaml")
report: "workflow/report/workflow.rst"

CONFIG = bench_config.load_config(config)
SUITE = CONFIG["suite"]
RUNS = bench_config.expand(SUITE, CONFIG["min_seeds"])
DATA, RESULTS, REPORTS = CONFIG["data_dir"], CONFIG["results_dir"], CONFIG["reports_dir"]
RUN_DIR = RESULTS + "/{suite}/{dataset}/{method}/{variant}/seed{seed}"
METHODS_SPEC = bench_config.load_methods()


def method_config_hash(wildcards):
    """The hash of a run's merged method config: a rule parameter, so that editing a variant
    (or the defaults under it) retrains exactly the runs it changes (rerun trigger `params`)."""
    return bench_config.config_hash(bench_config.method_config(wildcards.method, wildcards.variant, METHODS_SPEC))

# Every rule runs the suite's own CLI with the interpreter that runs Snakemake, from any
# working directory (the repository goes on PYTHONPATH).
BENCH = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "bench"))
DIRS = " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(CONFIG[key]))}"
                for key in ("data_dir", "results_dir", "reports_dir", "device", "precision", "min_seeds"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))
# Training and scoring jobs get OMP_NUM_THREADS={threads} (1 unless a profile says more): torch's
# default of one thread per core, times one job per core, oversubscribes the machine and runs
# several times slower than one thread per job.

wildcard_constraints:
    suite="[A-Za-z0-9_.+-]+",
    dataset="[A-Za-z0-9_.+-]+",
    method="[A-Za-z0-9_.+-]+",
    variant="[A-Za-z0-9_.+-]+",
    seed="[0-9]+",


# The runs' metrics are targets too: Snakemake does not rebuild a deleted intermediate file
# whose consumers are up to date, and deleting one metrics.json must re-evaluate that run.
rule all:
    input:
        [f"{run.path(RESULTS)}/metrics.json" for run in RUNS],
        f"{REPORTS}/{SUITE}/leaderboard.html",


onsuccess:
    # What to read at the end of a long run: where the report is, what it showed, what next.
    from reports.summary import text
    facts, results = Path(REPORTS, SUITE, "summary.json"), Path(RESULTS, SUITE, "summary.csv")
    # After another target (one run, `check`) the report may be older than the results it would sum up.
    if facts.exists() and results.exists() and facts.stat().st_mtime >= results.stat().st_mtime:
        defaults = bench_config.load_config()
        check = " ".join([BENCH, "check", "--suite", shlex.quote(SUITE)] + [
            f"--{key.replace('_', '-')} {shlex.quote(str(CONFIG[key]))}"
            for key in ("results_dir", "reports_dir", "min_seeds") if CONFIG[key] != defaults[key]])
        print("\n" + text(facts.parent, check), flush=True)


onerror:
    # Snakemake's error blocks scroll away among the lines of the jobs still running: name the
    # failed jobs again, last, with where to read why.
    failed = workflow.scheduler.failed
    if failed:
        print(f"\nThe pipeline stopped: {len(failed)} job(s) failed.", flush=True)
        for job in failed:
            where = f"log: {', '.join(job.log)}" if job.log else "its error is above, under 'Error in rule'"
            print(f"  {job!r} {' '.join(job.output)}\n    {where}", flush=True)
        print("Fix the cause and run the same command again: the jobs that finished do not run again.", flush=True)


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/check.smk"
