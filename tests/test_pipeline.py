"""The smoke suite end to end through Snakemake, in a temporary directory."""
import json
import re
import subprocess
import sys

import pandas as pd
import pytest

import methods
from evaluation import METRICS
from bench.config import REPO, expand, load_suite

GOLDEN_SMOKE = REPO / "evaluation/golden/smoke.csv"
CLUSTERING = {"acc_hungarian", "acc_aae", "nmi_arithmetic", "nmi_geometric", "ari"}
GENERATION = {"fid", "kid", "fd_classifier"}      # the smoke suite's image dataset has labels


def expected_metrics(method: str) -> set[str]:
    """What the evaluate step must score for a method of the smoke suite: its tracks' metrics."""
    tracks = methods.get(method).tracks
    return CLUSTERING | (GENERATION if "generation" in tracks else set())


def snakemake(workdir, *args, expect_success=True):
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", "2", *args, "--config", "suite=smoke"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert (result.returncode == 0) == expect_success, result.stdout[-3000:] + result.stderr[-3000:]
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
    for (dataset, method, variant), rows in board.groupby(["dataset", "method", "variant"]):
        assert set(rows["metric"]) == expected_metrics(method)
    assert scored[scored["metric"].isin(CLUSTERING)]["mean"].between(-1, 1).all()

    markdown = (smoke_run / "reports/smoke/leaderboard.md").read_text()
    for dataset, method, variant in expected:
        assert re.search(rf"^\| {method} \| {variant} \| {suite['seeds']} \|", markdown.split(f"## {dataset}")[1], re.M)
    assert "`acc[hungarian,split=all]`" in markdown
    for dataset in {run.dataset for run in expand("smoke")}:
        assert (smoke_run / f"reports/smoke/figures/{dataset}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sections = {(r.dataset, METRICS[r.metric].track) for r in board.itertuples()}
    assert (smoke_run / "reports/smoke/leaderboard.tex").read_text().count(r"\begin{tabular}") == len(sections)


def test_every_run_leaves_its_record(smoke_run):
    for run in expand("smoke"):
        run_dir = run.path(smoke_run / "results")
        assert {"run.json", "outputs.npz", "metrics.json", "train_log.csv", "train.log"} <= {p.name for p in run_dir.iterdir()}
    summary = pd.read_csv(smoke_run / "results/smoke/summary.csv")
    assert (summary["status"] == "completed").all()
    assert len(summary) == sum(len(expected_metrics(run.method)) for run in expand("smoke"))
    generation = summary[summary["metric"] == "fid"]
    assert generation["value"].isna().all() and generation["unavailable"].str.contains("at least 2048").all()


def test_second_invocation_does_nothing(smoke_run):
    assert "Nothing to be done" in snakemake(smoke_run, "-n")


def test_deleting_one_metrics_file_reevaluates_that_run_only(smoke_run):
    run = expand("smoke")[0]
    (run.path(smoke_run / "results") / "metrics.json").unlink()
    assert planned_jobs(snakemake(smoke_run, "-n")) == {"evaluate": 1, "aggregate": 1, "report": 1, "all": 1}
    snakemake(smoke_run)
    assert (run.path(smoke_run / "results") / "metrics.json").exists()


def test_check_passes_and_fails_on_an_injected_regression(smoke_run):
    snakemake(smoke_run, "check")
    verdicts = pd.read_csv(smoke_run / "reports/smoke/verdicts.csv")
    assert set(verdicts["verdict"]) == {"OK"} and len(verdicts) == len(pd.read_csv(GOLDEN_SMOKE))

    metrics_path = expand("smoke")[-1].path(smoke_run / "results") / "metrics.json"
    original = metrics_path.read_text()
    result = json.loads(original)
    result["metrics"]["acc_hungarian"]["value"] -= 0.5
    metrics_path.write_text(json.dumps(result))
    try:
        output = snakemake(smoke_run, "check", expect_success=False)
        assert "REGRESSION: digits/kmeans/raw acc_hungarian" in output
        verdicts = pd.read_csv(smoke_run / "reports/smoke/verdicts.csv")
        assert list(verdicts.loc[verdicts["verdict"] == "REGRESSION", "metric"]) == ["acc_hungarian"]
    finally:
        metrics_path.write_text(original)
    snakemake(smoke_run, "check")


def test_snakemake_html_report(smoke_run):
    snakemake(smoke_run, "--report", "report.html")
    report = (smoke_run / "report.html").read_text()
    assert "leaderboard.html" in report and "digits.png" in report
