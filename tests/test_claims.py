"""The claims registry: its lint against the real registries, every verdict rule on constructed
seeds, and `bench check` failing when a claim that held in the golden numbers no longer holds."""
import math
from dataclasses import replace

import pandas as pd
import pytest
import yaml

from bench import cli
from bench.config import registered_names
from bench.golden import golden_path
from common.schema import ConfigError
from evaluation import claims


def lint(registered):
    """What every claim must meet beyond claims.load's lint (which refuses a paper without a file
    in evaluation/published/); tests/test_adding_a_method.py runs it on a new method's claims."""
    assert all(c.claim and c.source.startswith(("arXiv ", "project page")) for c in registered)
    # Every claim on a method run at laptop scale is checked there. A new method has no laptop
    # golden numbers (hours to make): until it does, its claims need no laptop comparison.
    at_laptop = set(pd.read_csv(golden_path("laptop"))["method"])
    unchecked = [c.id for c in registered if "laptop" not in c.compare
                 and at_laptop & {comparison.better[0] for suite in c.compare.values() for comparison in suite}]
    assert not unchecked, f"claims on methods with laptop golden numbers but no laptop comparison: {unchecked}"


def test_every_claim_names_registered_methods_variants_datasets_metrics_and_suites():
    registered = claims.load(names=registered_names())
    lint(registered)
    vdae = next(c for c in registered if c.id == "vdae-keeps-topology-gw")
    assert vdae.lower_is_better and [c.dataset for c in vdae.compare["quick"]] == ["circle", "sphere", "torus",
                                                                                 "swiss_roll"]


def write(tmp_path, **changes):
    comparison = {"dataset": "digits", "better": "nmm/quick", "than": "kmeans/raw"}
    comparison.update(changes.pop("comparison", {}))
    claim = {"id": "c", "where": "abstract", "claim": "NMM beats k-means.", "metric": "acc_hungarian",
             "compare": {changes.pop("suite", "quick"): comparison}}
    claim.update(changes)
    (tmp_path / "nmm.yaml").write_text(yaml.safe_dump({"paper": "nmm", "claims": [claim]}))
    return tmp_path


def test_a_claim_on_a_method_with_laptop_golden_numbers_needs_a_laptop_comparison(tmp_path):
    only_quick = claims.load(write(tmp_path), names=registered_names())        # nmm/quick against kmeans/raw
    with pytest.raises(AssertionError, match=r"no laptop comparison: \['c'\]"):
        lint(only_quick)


@pytest.mark.parametrize("changes, message", [
    ({"comparison": {"better": "nnm/quick"}}, r"claims\.0: unknown method 'nnm'"),
    ({"comparison": {"than": "kmeans/rwa"}}, r"claims\.0: unknown variant of kmeans 'rwa'"),
    ({"comparison": {"dataset": "digts"}}, r"claims\.0: unknown dataset 'digts'"),
    ({"metric": "acc_hungrian"}, r"claims\.0: unknown metric 'acc_hungrian'"),
    ({"comparison": {"than": {"metric": "nmi_arithmetc"}}}, r"claims\.0: unknown metric 'nmi_arithmetc'"),
    ({"suite": "quikc"}, r"claims\.0: unknown suite 'quikc'"),
    ({"comparison": {"than": "kmeans"}}, r"bad value at claims\.0\.compare\.quick\.than"),
    ({"seeds": 3}, r"unknown key 'seeds'"),
])
def test_the_lint_catches_misspelt_names(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        claims.load(write(tmp_path, **changes), names=registered_names())


def test_a_claim_of_an_unregistered_paper_is_refused(tmp_path):
    path = write(tmp_path) / "nmm.yaml"
    path.write_text(path.read_text().replace("paper: nmm", "paper: nnm"))
    with pytest.raises(ConfigError, match=r"paper 'nnm' has no file nnm\.yaml in evaluation/published/"):
        claims.load(tmp_path)


# The rule on constructed seeds ----------------------------------------------------------------

SPEC = "acc[hungarian,split=all]"


def seeds(method, variant, values, metric="acc_hungarian", spec=SPEC, dataset="digits"):
    return [{"suite": "quick", "dataset": dataset, "method": method, "variant": variant, "seed": i, "metric": metric,
             "spec": spec, "value": v, "unavailable": None, "status": "completed"} for i, v in enumerate(values)]


def claim(than="kmeans/raw", metric="acc_hungarian"):
    raw = {"id": "c", "where": "abstract", "claim": "c", "metric": metric,
           "compare": {"quick": {"dataset": "digits", "better": "nmm/quick", "than": than}}}
    return claims._claim("nmm", "arXiv 0000.00000v1", raw, "test", None)


def verdict(rows, than="kmeans/raw", metric="acc_hungarian", suite="quick"):
    c = claim(than, metric)
    found = claims.verdicts([c], suite, claims.summary_lookup(pd.DataFrame(rows)))
    return found[0] if found else None


@pytest.mark.parametrize("better, than, expected", [
    ((0.90, 0.91, 0.89), (0.70, 0.71, 0.69), "HOLDS"),
    ((0.60, 0.61, 0.59), (0.70, 0.71, 0.69), "REVERSED"),
    ((0.80, 0.60, 0.70), (0.68, 0.69, 0.67), "UNDECIDED"),       # +0.02 within a wide interval
])
def test_two_groups_by_welchs_interval(better, than, expected):
    v = verdict(seeds("nmm", "quick", better) + seeds("kmeans", "raw", than))
    assert v.verdict == expected and v.test == "Welch"
    from scipy.stats import ttest_ind
    # the interval excludes 0 exactly when Welch's two-sided test rejects at 5 %
    assert (v.low > 0 or v.high < 0) == (ttest_ind(better, than, equal_var=False).pvalue < 0.05)
    assert v.difference == pytest.approx(sum(better) / 3 - sum(than) / 3)


def test_welch_interval_numbers():
    v = verdict(seeds("nmm", "quick", (0.9, 0.8)) + seeds("kmeans", "raw", (0.5, 0.6, 0.7)))
    se = math.sqrt(0.005 / 2 + 0.01 / 3)
    df = se ** 4 / ((0.005 / 2) ** 2 / 1 + (0.01 / 3) ** 2 / 2)
    from scipy.stats import t
    assert (v.low, v.high) == pytest.approx((0.25 - t.ppf(0.975, df) * se, 0.25 + t.ppf(0.975, df) * se))
    assert "nmm/quick 0.850 ± 0.071 (2) vs kmeans/raw 0.600 ± 0.100 (3): difference +0.250" in v.numbers()


@pytest.mark.parametrize("values, expected", [((0.9, 0.91, 0.89), "HOLDS"), ((0.3, 0.31, 0.29), "REVERSED"),
                                              ((0.3, 0.9, 0.6), "UNDECIDED")])
def test_a_stated_value_by_the_one_sample_interval(values, expected):
    v = verdict(seeds("nmm", "quick", values), than=0.5)
    assert v.verdict == expected and v.test == "one-sample" and v.than.label == "the stated value"


@pytest.mark.parametrize("after, expected", [((0.6, 0.72, 0.81), "HOLDS"), ((0.8, 0.92, 1.0), "REVERSED"),
                                             ((0.7, 0.6, 0.9), "UNDECIDED")])
def test_two_metrics_of_the_same_runs_paired_by_seed(after, expected):
    # the runs spread widely, the per-seed gain does not: only pairing sees that it holds
    final = (0.7, 0.8, 0.9)
    rows = seeds("nmm", "quick", final) + seeds("nmm", "quick", after, metric="acc_hungarian_after_pretraining",
                                                 spec="acc[hungarian,readout=after-pretraining,split=all]")
    than = {"metric": "acc_hungarian_after_pretraining"}
    v = verdict(rows, than=than)
    assert v.verdict == expected and v.test == "paired"
    if expected == "HOLDS":                    # unpaired (as in the golden file), the same numbers decide nothing
        lookup = claims.summary_lookup(pd.DataFrame(rows))
        c = claim(than)
        unpaired = claims.judge(c, "quick", c.compare["quick"][0], lambda *key: replace(lookup(*key), seeds=()))
        assert (unpaired.test, unpaired.verdict) == ("Welch", "UNDECIDED")


def test_lower_is_better_flips_the_claimed_side():
    gw = "gw[max-normalised,square-loss,n=500,split=all]"
    lower = seeds("nmm", "quick", (0.03, 0.031, 0.029), "gw", gw) + seeds("kmeans", "raw", (0.06, 0.061, 0.059), "gw", gw)
    higher = seeds("nmm", "quick", (0.06, 0.061, 0.059), "gw", gw) + seeds("kmeans", "raw", (0.03, 0.031, 0.029), "gw", gw)
    assert verdict(lower, metric="gw").verdict == "HOLDS" and verdict(lower, metric="gw").difference < 0
    assert verdict(higher, metric="gw").verdict == "REVERSED"


def test_one_seed_is_undecided_and_no_spread_is_decided_by_the_sign():
    one = verdict(seeds("nmm", "quick", (0.9,)) + seeds("kmeans", "raw", (0.5, 0.5)))
    assert one.verdict == "UNDECIDED" and one.reason == "needs ≥ 2 seeds on each side"
    exact = verdict(seeds("nmm", "quick", (0.6, 0.6)) + seeds("kmeans", "raw", (0.5, 0.5)))
    assert (exact.verdict, exact.low, exact.high) == ("HOLDS", pytest.approx(0.1), pytest.approx(0.1))
    tie = verdict(seeds("nmm", "quick", (0.5, 0.5)) + seeds("kmeans", "raw", (0.5, 0.5)))
    assert tie.verdict == "UNDECIDED"


def test_not_run_and_not_comparable_say_why():
    assert verdict(seeds("nmm", "quick", (0.9, 0.8)), suite="laptop") is None      # no comparison for the suite
    assert claims.not_run_here([claim()], "laptop") == ["c"]
    missing = verdict(seeds("nmm", "quick", (0.9, 0.8)))
    assert missing.verdict == "NOT-RUN" and "no completed run of kmeans/raw" in missing.reason
    failed = [{**seeds("kmeans", "raw", (None,))[0], "status": "failed"}]
    assert verdict(seeds("nmm", "quick", (0.9, 0.8)) + failed).verdict == "NOT-RUN"
    unavailable = [{**r, "value": None, "unavailable": "no posteriors"} for r in seeds("kmeans", "raw", (0, 0))]
    v = verdict(seeds("nmm", "quick", (0.9, 0.8)) + unavailable)
    assert v.verdict == "NOT-COMPARABLE" and v.reason == "kmeans/raw has no value: no posteriors"
    other = verdict(seeds("nmm", "quick", (0.9, 0.8)) + seeds("kmeans", "raw", (0.5, 0.6), spec="acc[hungarian,split=test]"))
    assert other.verdict == "NOT-COMPARABLE" and other.reason.startswith("different protocols")


def test_golden_claims_use_the_golden_statistics_with_the_checks_seeds():
    golden = pd.DataFrame([
        {"dataset": "digits", "method": "nmm", "variant": "quick", "metric": "acc_hungarian", "spec": SPEC,
         "mean": 0.9, "std": 0.01, "runs": 6, "check_seeds": 3},
        {"dataset": "digits", "method": "kmeans", "variant": "raw", "metric": "acc_hungarian", "spec": SPEC,
         "mean": 0.7, "std": 0.01, "runs": 6, "check_seeds": 3}])
    [v] = claims.verdicts([claim()], "quick", claims.golden_lookup(golden))
    assert v.verdict == "HOLDS" and (v.better.n, v.than.n) == (3, 3)
    now = claims.verdicts([claim()], "quick", claims.summary_lookup(pd.DataFrame(
        seeds("nmm", "quick", (0.6, 0.61, 0.59)) + seeds("kmeans", "raw", (0.7, 0.71, 0.69)))))
    [change] = claims.golden_changes([v], now)
    assert (change.kind, change.verdict, change.claim) == ("golden-claim", "REGRESSION", "c")
    assert change.reason.startswith("golden HOLDS, now REVERSED: nmm/quick 0.600 ± 0.010 (3)")
    assert claims.golden_changes(now, [v])[0].verdict == "CHANGED"
    assert claims.golden_changes([v], [v])[0].verdict == "OK"


# `bench check` ---------------------------------------------------------------------------------

def golden_row(method, variant, mean):
    return {"dataset": "digits", "method": method, "variant": variant, "metric": "acc_hungarian", "spec": SPEC,
            "mean": mean, "std": 0.01, "runs": 3, "rule": "deterministic", "check_seeds": 3, "tolerance": 1.0}


@pytest.mark.parametrize("nmm_now, exit_status", [((0.6, 0.61, 0.59), 1), ((0.72, 0.6, 0.8), 1),
                                                  ((0.9, 0.91, 0.89), 0)])
def test_bench_check_fails_when_a_claim_that_held_in_the_golden_numbers_no_longer_holds(
        tmp_path, monkeypatch, capsys, nmm_now, exit_status):
    """The real registry's nmm-beats-kmeans on quick: HOLDS in a constructed golden file whose
    tolerances are wide enough that only the claim can fail."""
    golden = tmp_path / "quick.csv"
    pd.DataFrame([golden_row("nmm", "quick", 0.9), golden_row("kmeans", "raw", 0.7)]).to_csv(golden, index=False)
    monkeypatch.setattr("bench.checks.golden_path", lambda suite: golden)
    summary = tmp_path / "results" / "quick" / "summary.csv"
    summary.parent.mkdir(parents=True)
    pd.DataFrame(seeds("nmm", "quick", nmm_now) + seeds("kmeans", "raw", (0.7, 0.71, 0.69))).to_csv(summary, index=False)
    status = cli.main(["check", "--suite", "quick", "--results-dir", str(tmp_path / "results"),
                       "--reports-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert status == exit_status
    rows = pd.read_csv(tmp_path / "reports" / "quick" / "verdicts.csv")
    [row] = rows[(rows["kind"] == "golden-claim") & (rows["claim"] == "nmm-beats-kmeans")].itertuples()
    if exit_status:
        assert "REGRESSION: claim nmm-beats-kmeans on digits (acc_hungarian): golden HOLDS, now" in err
        assert row.verdict == "REGRESSION"
    else:
        assert "REGRESSION" not in err and row.verdict == "OK"
    assert set(rows.loc[rows["kind"] == "golden", "verdict"]) == {"OK"}
