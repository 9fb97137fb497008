"""profiles/slurm: the paper suite's jobs and their resources (a dry run), and the smoke suite
through it on a real one-node SLURM cluster, with the numbers of a local run (the one
tests/test_pipeline.py looks at).

The cluster runs on localhost, as root, from a temporary directory: its own munge key and
socket, a generated slurm.conf (free ports, no accounting, no cgroups), munged, slurmctld and
slurmd; the test stops the daemons it started. It needs Debian's slurmctld, slurmd,
slurm-client and munge, which .ci/run installs with apt-get; without them, or without root,
it is skipped and says why.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.config import REPO, expand
from methods import CPU_ONLY, METHODS
from smoke_suite import run_metrics, snakemake

pytestmark = pytest.mark.xdist_group("local-smoke-run")     # with tests/test_pipeline.py, which shares the run

PARTITION = "bench"
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "sinfo")

missing = [program for program in PROGRAMS if shutil.which(program) is None]
needs_slurm = pytest.mark.skipif(
    bool(missing) or os.geteuid() != 0,
    reason=(f"SLURM is not installed (no {', '.join(missing)}): .ci/run installs Debian's slurmctld, slurmd, "
            "slurm-client and munge" if missing else "the test cluster's daemons run as root"))
PROFILE = str(REPO / "profiles/slurm")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_conf(root: Path, host: str) -> str:
    return f"""\
ClusterName=benchtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
# No cgroups, no accounting database: what a container or a laptop can run.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue (the profile's status command, and this test's check).
MinJobAge=3600
# The node offers the memory the profile asks for, whatever this machine has.
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=100000 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def cluster():
    """munged, slurmctld and slurmd on localhost; yields the environment that reaches them."""
    # Not under pytest's tmp_path: munged wants every directory above its socket searchable by all.
    root = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    root.chmod(0o755)
    for name in ("state", "spool"):
        (root / name).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host))
    # Inside a job, the SLURM plugin runs the rule with srun, without any SLURM_* variable
    # (SLURM_CONF too); a real cluster's srun finds /etc/slurm/slurm.conf, this one is told.
    shims = root / "bin"
    shims.mkdir()
    srun = shims / "srun"
    srun.write_text(f'#!/bin/sh\nexport SLURM_CONF={shlex.quote(str(conf))}\nexec {shutil.which("srun")} "$@"\n')
    srun.chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    daemons = []
    try:
        def start(*command):
            daemons.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        start("munged", "--foreground", f"--key-file={key}", f"--socket={root}/munge.socket",
              f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed")
        wait_for(lambda: (root / "munge.socket").exists(), "munged", root)
        start("slurmctld", "-D", "-i", "-f", str(conf))
        start("slurmd", "-D", "-f", str(conf), "-N", host)
        wait_for(lambda: query(["sinfo", "-h", "-o", "%t"], env) == "idle", "the node to be idle", root)
        yield env
    finally:
        if daemons:
            subprocess.run(["scancel", "--partition", PARTITION], env=env, capture_output=True, timeout=30)
        for daemon in reversed(daemons):        # slurmd, slurmctld, munged
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(root, ignore_errors=True)


def query(command, env) -> str:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30).stdout.strip()


def wait_for(condition, what: str, root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(root.glob("*.log")))
            raise RuntimeError(f"the test cluster did not come up: waited {timeout:.0f} s for {what}\n{logs}")
        time.sleep(0.5)


def planned(output: str) -> list[tuple[str, dict, dict]]:
    """(rule, wildcards, resources) of every job that a dry run lists."""
    def pairs(text):
        return dict(item.split("=", 1) for item in text.split(", ")) if text else {}
    jobs = []
    for block in re.split(r"^\s*rule ", output, flags=re.M)[1:]:
        fields = dict(re.findall(r"^\s+(\w+): (.*)$", block, flags=re.M))
        jobs.append((block.split(":")[0], pairs(fields.get("wildcards")), pairs(fields.get("resources"))))
    return jobs


def test_paper_suite_dry_run_lists_every_job_with_its_resources(tmp_path):
    output = snakemake(tmp_path, "-n", "--profile", PROFILE, suite="paper")
    jobs = planned(output)
    runs = expand("paper")
    train = {(w["dataset"], w["method"], w["variant"], int(w["seed"])): r for rule, w, r in jobs if rule == "train"}
    assert set(train) == {(run.dataset, run.method, run.variant, run.seed_index) for run in runs}
    assert output.count("Group job run") == len(runs)       # each run trains and scores in one SLURM job
    assert CPU_ONLY < set(METHODS)
    for (_, method, _, _), resources in train.items():
        assert resources["gpu"] == ("0" if method in CPU_ONLY else "1"), (method, resources)
        assert (resources["mem_mb"], resources["runtime"]) == ("32000", "1440")
    for rule, _, resources in jobs:
        if rule != "all":
            assert resources["slurm_partition"] == "FILL-IN-PARTITION" and "runtime" in resources, (rule, resources)


@needs_slurm
def test_smoke_suite_through_the_slurm_profile_equals_a_local_run(cluster, tmp_path, local_smoke_run):
    output = snakemake(tmp_path, "--profile", PROFILE,
                       # the profile's FILL-IN settings, for this cluster (it has no accounts)
                       "--default-resources", f"slurm_partition={PARTITION}",
                       # the jobs take seconds: look at them soon and keep every log to check
                       "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
                       env=cluster)

    # Every job went through SLURM, with a job id of its own: a dataset's preparation, a run's
    # training and scoring (one job: the profile groups them), the aggregate, the report ...
    runs = expand("smoke")
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(set(job_ids)) == len(job_ids) == len({run.dataset for run in runs}) + len(runs) + 2
    # ... which SLURM ran to completion (the profile polls squeue: this cluster has no sacct) ...
    states = dict(line.split("|") for line in query(["squeue", "--states=all", "-h", "-o", "%i|%T"], cluster).split())
    assert {states.get(job_id) for job_id in job_ids} == {"COMPLETED"}
    # ... leaving its log where the plugin keeps them; a run's log shows both of its steps.
    logs = {log.stem: log.read_text() for log in (tmp_path / ".snakemake/slurm_logs").rglob("*.log")}
    assert sorted(logs) == sorted(job_ids)
    for run in runs:
        wildcards = (f"wildcards: suite={run.suite}, dataset={run.dataset}, method={run.method}, "
                     f"variant={run.variant}, seed={run.seed_index}\n")
        [log] = [log for log in logs.values() if wildcards in log]
        assert "rule train:" in log and "rule evaluate:" in log

    # The same numbers as a local run, to the last bit (same seeds, one thread per job).
    assert run_metrics(tmp_path / "results") == local_smoke_run.metrics
