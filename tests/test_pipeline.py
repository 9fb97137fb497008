"""The smoke suite end to end through Snakemake, in a temporary directory."""
import json
from collections import Counter
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import datasets
import methods
from evaluation import METRICS
from bench.config import REPO, expand
from smoke_suite import snakemake as run_snakemake

pytestmark = pytest.mark.xdist_group("local-smoke-run")     # with tests/test_slurm.py, which shares the run

GOLDEN_SMOKE = REPO / "evaluation/golden/smoke.csv"
CLUSTERING = {"acc_hungarian", "acc_aae", "nmi_arithmetic", "nmi_geometric", "ari"}
AT_MEAN = {"acc_hungarian_at_mean", "nmi_arithmetic_at_mean"}      # for methods that give assignments_at_mean
AFTER_PRETRAINING = {"acc_hungarian_after_pretraining", "nmi_arithmetic_after_pretraining"}   # ClusterDDPM
GENERATION = {"fid", "kid"}
DISENTANGLEMENT = {"beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness",
                   "sap", "modularity"}
TOPOLOGY = {"gw", "bi_lipschitz_mean", "bi_lipschitz_std"}
WALK = {"bi_lipschitz_walk_mean", "bi_lipschitz_walk_std"}        # for methods that give their random walk's pairs


def expected_metrics(run, workdir) -> set[str]:
    """What the evaluate step must score for a run: the metrics of the method's tracks that the
    dataset can support (labels for clustering and the classifier FD, images for generation,
    factors for disentanglement, points for topology), and the read-outs the method gives."""
    tracks, dataset = methods.get(run.method).tracks, datasets.get(run.dataset)
    images, labelled = dataset.kind == "images", bool(dataset.n_classes)
    with np.load(run.path(workdir / "results") / "outputs.npz") as outputs:
        at_mean = "assignments_at_mean" in outputs.files
        after_pretraining = "assignments_after_pretraining" in outputs.files
        walk = "walk_latent" in outputs.files
    read_outs = (AT_MEAN if at_mean else set()) | (AFTER_PRETRAINING if after_pretraining else set())
    return ((CLUSTERING | read_outs if "clustering" in tracks and labelled else set())
            | (GENERATION | ({"fd_classifier"} if labelled else set()) if "generation" in tracks and images else set())
            | (DISENTANGLEMENT if "disentanglement" in tracks and dataset.factor_names else set())
            | (TOPOLOGY | (WALK if walk else set()) if "topology" in tracks and not images else set()))


def snakemake(workdir, *args, expect_success=True):
    return run_snakemake(workdir, "--cores", "2", *args, expect_success=expect_success)


def planned_jobs(output: str) -> dict[str, int]:
    """The job counts of a dry run's 'Job stats' table."""
    table = output.split("Job stats:")[1].split("total")[0] if "Job stats:" in output else ""
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M)}


@pytest.fixture(scope="module")
def smoke_run(local_smoke_run):
    return local_smoke_run.path


def test_leaderboard_has_a_row_per_dataset_method_variant_and_metric(smoke_run):
    board = pd.read_csv(smoke_run / "reports/smoke/leaderboard.csv")
    expected = {(run.dataset, run.method, run.variant) for run in expand("smoke")}
    assert set(board[["dataset", "method", "variant"]].itertuples(index=False, name=None)) == expected
    scored = board.dropna(subset=["mean"])
    seeds = Counter((run.dataset, run.method, run.variant) for run in expand("smoke"))
    assert all(row.seeds == seeds[row.dataset, row.method, row.variant] for row in scored.itertuples())
    for run in expand("smoke"):
        rows = board[(board["dataset"] == run.dataset) & (board["method"] == run.method)
                     & (board["variant"] == run.variant)]
        assert set(rows["metric"]) == expected_metrics(run, smoke_run), run.label()
    assert scored[scored["metric"].isin(CLUSTERING)]["mean"].between(-1, 1).all()

    markdown = (smoke_run / "reports/smoke/leaderboard.md").read_text()
    for dataset, method, variant in expected:
        assert re.search(rf"^\| {method} \| {variant} \| {seeds[dataset, method, variant]} \|",
                         markdown.split(f"## {dataset}")[1], re.M)
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
    assert len(summary) == sum(len(expected_metrics(run, smoke_run)) for run in expand("smoke"))
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

    kmeans = next(run for run in expand("smoke") if (run.dataset, run.method) == ("digits", "kmeans"))
    metrics_path = kmeans.path(smoke_run / "results") / "metrics.json"
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


def test_two_invocations_on_one_directory_do_not_both_run(tmp_path):
    run = next(r for r in expand("smoke") if r.method == "gmvae")
    target = str(run.path("results") / "metrics.json")
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
               "--cores", "1", target, "--config", "suite=smoke"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any((tmp_path / ".snakemake" / "locks").glob("*")) and first.poll() is None:
            assert time.monotonic() < deadline, "the first invocation never took its lock"
            time.sleep(0.05)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        # Snakemake refuses either at its lock or, when a job of the first is already running,
        # at that job's incomplete output; both leave the first invocation alone.
        refusal = second.stdout + second.stderr
        assert second.returncode != 0
        assert "cannot be locked" in refusal or "Incomplete files:" in refusal, refusal[-2000:]
    finally:
        output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output[-3000:]
    assert json.loads((tmp_path / target).read_text())["status"] == "completed"


# Last: this test breaks the smoke run's blobs data on purpose.
def test_failed_runs_are_recorded_shown_as_failed_and_the_others_finish(smoke_run, monkeypatch):
    # blobs prepared again with NaN points, which the methods refuse; prepared, not overwritten
    # in place: an array that no longer matches its manifest is prepared again by Snakemake.
    blobs = datasets.get("blobs")
    points = blobs.build(smoke_run)["all"]
    monkeypatch.setattr(type(blobs), "build", lambda self, workdir: {"all": {**points, "x": np.full_like(points["x"], np.nan)}})
    blobs.prepare(smoke_run / "data", force=True)
    shutil.rmtree(smoke_run / "results/smoke/blobs")         # the blobs runs train again
    output = snakemake(smoke_run)
    blobs_runs = [run for run in expand("smoke") if run.dataset == "blobs"]
    assert f"WARNING: {len(blobs_runs)} run(s) failed" in output
    summary = pd.read_csv(smoke_run / "results/smoke/summary.csv")
    assert set(summary.loc[summary["dataset"] == "blobs", "status"]) == {"failed"}
    assert set(summary.loc[summary["dataset"] == "digits", "status"]) == {"completed"}
    markdown = (smoke_run / "reports/smoke/leaderboard.md").read_text()
    failed_block = markdown.split("## Failed runs")[1]
    for run in blobs_runs:
        assert f"blobs/{run.method}/{run.variant}/seed{run.seed_index}: failed (ValueError: Input" in failed_block
    assert "## blobs" not in markdown                        # no numbers for them
    assert (smoke_run / "reports/smoke/figures/blobs.png").exists()
    assert "REGRESSION: blobs/" in snakemake(smoke_run, "check", expect_success=False)
