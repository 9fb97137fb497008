"""Golden numbers across machines (bench/golden.py): the pooling rules on constructed results,
and the committed smoke golden numbers (made on the native kernels) against a smoke run under
another kernel path: no false alarm, and a real regression still flagged."""
import json
import os
import subprocess

import pandas as pd
import pytest

from bench import cli
from bench.config import expand
from bench.config import ConfigError
from bench.golden import KERNELS, clean_commit, golden_path, pool, provenance_path
from evaluation.aggregate import COLUMNS
from evaluation.verdicts import FAMILY_FALSE_ALARM, band_tolerance
from smoke_suite import snakemake


def summary(rows):
    return pd.DataFrame([{"suite": "smoke", "spec": "s", "status": "completed", "unavailable": None,
                          "config_hash": "h", **row} for row in rows], columns=COLUMNS)


def test_pooling_keeps_the_tight_rule_for_methods_without_a_network():
    # kmeans on digits runs 2 seeds in the smoke suite, gmvae 1: golden runs have 3 seeds each
    native = summary([{"dataset": "digits", "method": m, "variant": v, "seed": s, "metric": "ari", "value": x}
                      for m, v, values in (("kmeans", "raw", (0.50, 0.52, 0.90)), ("gmvae", "smoke", (0.3, 0.4, 0.5)))
                      for s, x in enumerate(values)])
    avx2 = native.assign(value=[0.50, 0.52, 0.90, 0.35, 0.45, 0.6])
    table, rule = pool({"native": native, "avx2": avx2}, "smoke")
    kmeans, gmvae = (table.set_index("method").loc[method] for method in ("kmeans", "gmvae"))
    assert (kmeans.rule, kmeans.runs, kmeans["mean"], kmeans.check_seeds) == ("deterministic", 2, pytest.approx(0.51), 2)
    assert (gmvae.rule, gmvae.runs, gmvae.check_seeds) == ("spread", 6, 1)
    assert gmvae["mean"] == pytest.approx(0.4333, abs=1e-4)
    assert rule["banded_metrics"] == 1 and rule["per_metric_false_alarm"] == FAMILY_FALSE_ALARM
    assert gmvae.tolerance == pytest.approx(band_tolerance(gmvae["std"], 6, 1, FAMILY_FALSE_ALARM))


def test_golden_numbers_come_from_a_committed_tree_only(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "evaluation/golden").mkdir(parents=True)
    for name in ("method.py", "evaluation/golden/quick.csv"):
        (tmp_path / name).write_text("1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    (tmp_path / "evaluation/golden/quick.csv").write_text("2\n")         # the golden files themselves may change
    assert len(clean_commit(tmp_path)) == 40
    (tmp_path / "method.py").write_text("2\n")
    with pytest.raises(ConfigError, match="uncommitted changes:\n M method.py\ncommit them first"):
        clean_commit(tmp_path)


def test_a_group_without_golden_numbers_is_named_not_checked(tmp_path, monkeypatch, capsys):
    """A group added after the golden numbers were made cannot regress; the check says so, per
    group, and still checks the others."""
    rows = [{"dataset": "digits", "method": m, "variant": "raw", "seed": s, "metric": "ari", "value": v}
            for m, values in (("kmeans", (0.5, 0.6)), ("gmm", (0.1, 0.1))) for s, v in enumerate(values)]
    golden = tmp_path / "smoke.csv"
    pd.DataFrame([{"dataset": "digits", "method": "kmeans", "variant": "raw", "metric": "ari", "spec": "s",
                   "mean": 0.9, "std": 0.0, "runs": 2, "rule": "deterministic", "check_seeds": 2,
                   "tolerance": 0.01}]).to_csv(golden, index=False)
    monkeypatch.setattr("bench.checks.golden_path", lambda suite: golden)
    summary_csv = tmp_path / "results" / "smoke" / "summary.csv"
    summary_csv.parent.mkdir(parents=True)
    summary(rows).to_csv(summary_csv, index=False)
    status = cli.main(["check", "--suite", "smoke", "--results-dir", str(tmp_path / "results"),
                       "--reports-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert ("digits/gmm/raw: no golden numbers: not checked; make them with python -m bench golden --suite smoke"
            in err.splitlines())
    assert "kmeans/raw: no golden numbers" not in err
    assert status == 1 and "REGRESSION: digits/kmeans/raw ari: golden 0.9000, now 0.5500" in err


@pytest.fixture(scope="module")
def avx2_smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("avx2-smoke")
    snakemake(workdir, "--cores", "2", env={**os.environ, **KERNELS["avx2"]})
    return workdir


def check(workdir, expect_success=True):
    return snakemake(workdir, "check", env={**os.environ, **KERNELS["avx2"]}, expect_success=expect_success)


def test_another_kernel_path_raises_no_false_alarm(avx2_smoke_run):
    gmvae = next(run for run in expand("smoke") if run.method == "gmvae")
    record = json.loads((gmvae.path(avx2_smoke_run / "results") / "run.json").read_text())
    assert record["compute"]["torch_cpu_capability"] == "AVX2"
    golden = json.loads(provenance_path("smoke").read_text())
    assert "AVX2" not in {c for k in golden["kernels"].values() for c in k["cpu_capabilities"]}
    output = check(avx2_smoke_run)
    verdicts = pd.read_csv(avx2_smoke_run / "reports/smoke/verdicts.csv")
    golden_rows = verdicts[verdicts["kind"] == "golden"]
    assert len(golden_rows) == len(pd.read_csv(golden_path("smoke"))) and "REGRESSION" not in output
    assert set(golden_rows["verdict"]) <= {"OK", "CHANGED"}


def test_a_real_regression_is_still_flagged_across_machines(avx2_smoke_run):
    gmvae = next(run for run in expand("smoke") if run.method == "gmvae")
    golden = pd.read_csv(golden_path("smoke")).set_index(["method", "metric"]).loc[("gmvae", "acc_hungarian")]
    metrics_path = gmvae.path(avx2_smoke_run / "results") / "metrics.json"
    original = metrics_path.read_text()
    result = json.loads(original)
    result["metrics"]["acc_hungarian"]["value"] = golden["mean"] - golden["tolerance"] - 0.02
    metrics_path.write_text(json.dumps(result))
    try:
        output = check(avx2_smoke_run, expect_success=False)
        assert "REGRESSION: digits/gmvae/smoke acc_hungarian" in output
        assert "0.02 outside the spread band" in output and "crosses machines" in output
    finally:
        metrics_path.write_text(original)
