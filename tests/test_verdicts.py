"""Verdicts on constructed cases: every published verdict, and every golden outcome."""
import math

import numpy as np
import pandas as pd
import pytest

from evaluation.published import Published
from evaluation.verdicts import band_tolerance, golden_tolerance, golden_verdicts, judge_published

SPEC = "acc[aae-most-confident,split=test]"


def entry(value=0.80, std=None, runs=None, aggregate="mean", spec=SPEC, unconfirmed=None, resolution=None):
    return Published(paper="p", source="arXiv 0000.00000v1, Table 1", method="m", variant="v", dataset="mnist",
                     split="test", metric="acc_aae", spec=spec, value=value, std=std, runs=runs,
                     aggregate=aggregate, printed="", unconfirmed=unconfirmed, resolution=resolution)


def ours(*values, spec=SPEC):
    return pd.DataFrame({"spec": [spec] * len(values), "value": list(values)})


@pytest.mark.parametrize("values, published_std, expected", [
    ((0.80, 0.81, 0.79), 0.02, "REPRODUCED"),        # difference 0
    ((0.83, 0.84, 0.82), 0.02, "WITHIN-NOISE"),      # +0.03 over se sqrt(0.0001/3 + 0.0004) = 0.0208: z = 1.4
    ((0.70, 0.71, 0.69), 0.02, "BELOW"),             # z = -4.8
    ((0.90, 0.91, 0.89), 0.02, "ABOVE"),
])
def test_mean_entries(values, published_std, expected):
    verdict = judge_published(entry(std=published_std), ours(*values))
    assert verdict.verdict == expected
    se = math.sqrt(pd.Series(values).std() ** 2 / 3 + published_std ** 2)
    assert verdict.standard_errors == pytest.approx((sum(values) / 3 - 0.80) / se)


@pytest.mark.parametrize("values, expected", [
    ((0.4742, 0.4742, 0.4742), "REPRODUCED"),       # +0.0002 over the rounding's 0.001/sqrt(12) = 0.00029: z = 0.7
    ((0.4745, 0.4745, 0.4745), "WITHIN-NOISE"),     # z = 1.7
    ((0.4758, 0.4758, 0.4758), "ABOVE"),            # z = 6.2: their five runs agreed to 0.0005, ours elsewhere
])
def test_a_printed_zero_std_leaves_the_rounding_as_the_standard_error(values, expected):
    """"0.474 ± 0.000" against seeds of ours that agree: without the rounding se would be 0 and no verdict given."""
    verdict = judge_published(entry(value=0.474, std=0.0, runs=5, resolution=0.001), ours(*values))
    assert verdict.verdict == expected
    assert verdict.standard_errors == pytest.approx((values[0] - 0.474) / math.sqrt(0.001 ** 2 / 12), rel=1e-6)
    assert judge_published(entry(value=0.474, std=0.0, runs=5), ours(*values)).verdict == "NOT-COMPARABLE"


def test_published_runs_shrink_the_published_standard_error():
    loose = judge_published(entry(std=0.05), ours(0.85, 0.86, 0.84))
    tight = judge_published(entry(std=0.05, runs=25), ours(0.85, 0.86, 0.84))
    assert loose.verdict == "REPRODUCED" and tight.verdict == "ABOVE"


def test_best_run_entries_compare_our_best_seed_in_units_of_our_seed_spread():
    verdict = judge_published(entry(value=0.88, aggregate="best-run"), ours(0.80, 0.90, 0.70))
    assert verdict.ours == pytest.approx(0.90)
    assert verdict.standard_errors == pytest.approx(0.02 / 0.1)
    assert verdict.verdict == "REPRODUCED" and "best of 3 seeds" in verdict.reason


def test_different_specs_are_not_comparable_and_say_why():
    verdict = judge_published(entry(spec="acc[aae-most-confident,split=train+test]"), ours(0.8, 0.8))
    assert verdict.verdict == "NOT-COMPARABLE"
    assert verdict.reason == ("different protocol: ours acc[aae-most-confident,split=test], "
                              "published acc[aae-most-confident,split=train+test]")


def test_no_noise_estimate_is_not_comparable():
    verdict = judge_published(entry(std=None), ours(0.8))
    assert verdict.verdict == "NOT-COMPARABLE" and "at least two seeds" in verdict.reason


def test_no_completed_run_is_not_comparable():
    assert judge_published(entry(std=0.1), ours(None)).verdict == "NOT-COMPARABLE"


def test_unconfirmed_entries_carry_their_assumption():
    verdict = judge_published(entry(std=0.02, unconfirmed="split assumed"), ours(0.8, 0.8, 0.8))
    assert verdict.verdict == "REPRODUCED" and verdict.reason == "assumes: split assumed"


def golden_row(mean, std=0.01, seeds=3, spec="acc[hungarian,split=all]"):
    return {"dataset": "digits", "method": "kmeans", "variant": "raw", "metric": "acc_hungarian", "spec": spec,
            "mean": mean, "std": std, "seeds": seeds, "runs": seeds, "rule": "deterministic", "check_seeds": seeds,
            "tolerance": golden_tolerance(std, seeds)}


@pytest.mark.parametrize("current, expected", [(0.80, "OK"), (0.795, "OK"), (0.75, "REGRESSION"), (0.85, "CHANGED")])
def test_golden_outcomes(current, expected):
    golden = pd.DataFrame([golden_row(0.80)])
    now = pd.DataFrame([golden_row(current)]).drop(columns="tolerance")
    assert [v.verdict for v in golden_verdicts(golden, now)] == [expected]


def test_golden_missing_result_and_changed_spec_are_regressions():
    golden = pd.DataFrame([golden_row(0.80)])
    empty = pd.DataFrame(columns=golden.columns.drop("tolerance"))
    assert golden_verdicts(golden, empty)[0].verdict == "REGRESSION"
    moved = pd.DataFrame([golden_row(0.80, spec="acc[hungarian,split=test]")]).drop(columns="tolerance")
    assert golden_verdicts(golden, moved)[0].reason == "spec changed to acc[hungarian,split=test]"


def test_golden_tolerance_follows_the_seed_spread_with_a_floor():
    assert golden_tolerance(0.1, 4) == pytest.approx(0.15)
    assert golden_tolerance(0.0, 3) == golden_tolerance(math.nan, 1) == 0.01


@pytest.mark.parametrize("current, expected", [(12.0, "OK"), (20.0, "REGRESSION"), (5.0, "CHANGED")])
def test_golden_direction_follows_the_metric(current, expected):
    row = {**golden_row(12.0, std=1.0), "metric": "fd_classifier", "spec": "fd[digits-classifier]"}
    now = pd.DataFrame([{**row, "mean": current}]).drop(columns="tolerance")
    assert [v.verdict for v in golden_verdicts(pd.DataFrame([row]), now)] == [expected]


def test_band_tolerance_is_the_prediction_interval_of_a_mean():
    # t(5, 0.999) = 5.8934: six golden runs, a mean of three new ones
    assert band_tolerance(0.1, 6, 3, 0.001) == pytest.approx(5.8934 * 0.1 * math.sqrt(1 / 6 + 1 / 3), rel=1e-4)
    assert band_tolerance(0.1, 4, 3, 0.001) > band_tolerance(0.1, 6, 3, 0.001)     # fewer runs, wider
    assert band_tolerance(0.0, 6, 3, 0.001) == 0.01 and band_tolerance(0.1, 1, 3, 0.001) == math.inf


@pytest.mark.parametrize("runs, seeds", [(6, 3), (4, 1), (10, 2)])
def test_band_false_alarm_rate_is_its_level(runs, seeds):
    """Under the rule's own assumption (normal noise, unchanged code) an unchanged result is
    flagged as a regression with probability alpha: 200,000 simulated golden files and checks."""
    rng, alpha, trials = np.random.default_rng(0), 0.01, 200_000
    golden, new = rng.normal(size=(trials, runs)), rng.normal(size=(trials, seeds)).mean(1)
    scale = math.sqrt(1 / runs + 1 / seeds)
    from scipy.stats import t
    flagged = golden.mean(1) - new > t.ppf(1 - alpha, runs - 1) * golden.std(1, ddof=1) * scale
    assert band_tolerance(1.0, runs, seeds, alpha) == pytest.approx(t.ppf(1 - alpha, runs - 1) * scale)
    assert abs(flagged.mean() - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / trials)


def test_a_flagged_value_says_how_far_outside_the_band_and_on_which_machines():
    golden = pd.DataFrame([{**golden_row(0.80), "method": "gmvae", "rule": "spread", "tolerance": 0.05, "runs": 6}])
    now = pd.DataFrame([{**golden_row(0.70), "method": "gmvae"}]).drop(columns="tolerance")
    [verdict] = golden_verdicts(golden, now, machines="the comparison crosses machines: AVX2")
    assert verdict.verdict == "REGRESSION"
    assert verdict.reason.startswith("worse by 0.1: 0.05 outside the spread band (±0.05 around 0.8, 6 golden runs)")
    assert "crosses machines: AVX2" in verdict.reason
