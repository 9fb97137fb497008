"""The smoke suite end to end through Snakemake, in a temporary directory."""
import re
import subprocess
import sys

import pandas as pd
import pytest

from bench.config import REPO, expand, load_suite


def snakemake(workdir, *args):
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", "2", "--config", "suite=smoke", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def planned_jobs(output: str) -> dict[str, int]:
    """The job counts of a dry run's 'Job stats' table."""
    table = output.split("Job stats:")[1].split("total")[0] if "Job stats:" in output else ""
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M)}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    snakemake(workdir)
    return workdir


def test_leaderboard_has_a_row_per_dataset_method_variant_and_metric(smoke_run):
    board = pd.read_csv(smoke_run / "reports/smoke/leaderboard.csv")
    suite = load_suite("smoke")
    expected = {(run.dataset, run.method, run.variant) for run in expand("smoke")}
    assert set(board[["dataset", "method", "variant"]].itertuples(index=False, name=None)) == expected
    scored = board.dropna(subset=["mean"])
    assert (scored["seeds"] == suite["seeds"]).all()
    assert set(board["metric"]) == {"acc_hungarian", "acc_aae", "nmi_arithmetic", "nmi_geometric", "ari"}
    assert scored["mean"].between(-1, 1).all()

    markdown = (smoke_run / "reports/smoke/leaderboard.md").read_text()
    for dataset, method, variant in expected:
        assert re.search(rf"^\| {method} \| {variant} \| {suite['seeds']} \|", markdown.split(f"## {dataset}")[1], re.M)
    assert "`acc[hungarian,split=all]`" in markdown
    assert (smoke_run / "reports/smoke/figures/scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_run_leaves_its_record(smoke_run):
    for run in expand("smoke"):
        run_dir = run.path(smoke_run / "results")
        assert {"run.json", "outputs.npz", "metrics.json", "train_log.csv", "train.log"} <= {p.name for p in run_dir.iterdir()}
    summary = pd.read_csv(smoke_run / "results/smoke/summary.csv")
    assert (summary["status"] == "completed").all()
    assert len(summary) == len(expand("smoke")) * 5


def test_second_invocation_does_nothing(smoke_run):
    assert "Nothing to be done" in snakemake(smoke_run, "-n")


def test_deleting_one_metrics_file_reevaluates_that_run_only(smoke_run):
    run = expand("smoke")[0]
    (run.path(smoke_run / "results") / "metrics.json").unlink()
    assert planned_jobs(snakemake(smoke_run, "-n")) == {"evaluate": 1, "aggregate": 1, "report": 1, "all": 1}
    snakemake(smoke_run)
    assert (run.path(smoke_run / "results") / "metrics.json").exists()
