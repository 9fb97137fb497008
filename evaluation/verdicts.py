"""Verdicts: how our runs compare with a published number, and with the suite's golden numbers.

Published (docs/design.md): our statistic is the mean over seeds for a published mean, and the
best seed for a published best run. The difference is measured in standard errors,
    se = sqrt(s_ours² / n_ours + s_pub² / n_pub)      (mean; n_pub = 1 when not stated)
    se = s_ours                                        (best run: the spread of one run)
and the verdict is REPRODUCED within 1 se, WITHIN-NOISE within 2 se, else BELOW or ABOVE.
A number printed to a few digits is known only to its last one: where the printed digits are
known (a table cell), the rounding's variance, unit²/12 of a uniform error, joins se². It keeps
a published "0.474 ± 0.000" and seeds of ours that agree from making se zero.
Different specs are never compared, nor a number whose dataset variant is uncertain (e.g.
MPI3D toy or real): NOT-COMPARABLE, with the reason.

Golden: the committed results of a suite (evaluation/golden/<suite>.csv, made by
bench/golden.py from runs under several CPU kernel paths). A mean that gets worse than the
golden mean by more than the tolerance (lower, or higher for distances such as FID) is a
REGRESSION; a change for the better beyond it is CHANGED (worth a look, not a failure); a
missing result is a REGRESSION. The tolerance follows one of two rules:
    deterministic   methods without a network, whose numbers do not depend on the CPU's
                    kernels: three standard errors of the seeds, at least MIN_TOLERANCE
    spread          networks: `band_tolerance`, a one-sided test of the new mean against the
                    spread of the golden runs (seeds × kernel paths) at a per-metric level
                    that keeps the whole suite's false-alarm rate at FAMILY_FALSE_ALARM
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from evaluation.metrics import METRICS
from evaluation.published import Published, spec_matches, unstated

REPRODUCED, WITHIN_NOISE, BELOW, ABOVE, NOT_COMPARABLE = "REPRODUCED", "WITHIN-NOISE", "BELOW", "ABOVE", "NOT-COMPARABLE"
OK, CHANGED, REGRESSION = "OK", "CHANGED", "REGRESSION"
REPRODUCED_SE, NOISE_SE = 1.0, 2.0
GOLDEN_COLUMNS = ["dataset", "method", "variant", "metric", "spec", "mean", "std", "runs", "rule", "check_seeds",
                  "tolerance"]
MIN_TOLERANCE = 0.01
FAMILY_FALSE_ALARM = 0.01      # the chance that an unchanged suite raises any false alarm (Bonferroni bound)


@dataclass(frozen=True)
class Verdict:
    kind: str                  # "published", "golden", "claim" or "golden-claim"
    dataset: str
    method: str
    variant: str
    metric: str
    spec: str
    verdict: str
    ours: float | None = None  # our mean, or our best seed for a best-run entry
    ours_std: float | None = None
    seeds: int = 0
    reference: float | None = None
    reference_std: float | None = None
    difference: float | None = None
    standard_errors: float | None = None
    reason: str = ""
    source: str = ""
    claim: str = ""            # a claim's id (evaluation/claims.py), for kinds "claim" and "golden-claim"

    def row(self) -> dict:
        return asdict(self)


def judge_published(entry: Published, values: pd.DataFrame) -> Verdict:
    """`values`: our per-seed rows (columns spec, value) for the entry's dataset, method, variant, metric."""
    base = dict(kind="published", dataset=entry.dataset, method=entry.method, variant=entry.variant,
                metric=entry.metric, spec=entry.spec, reference=entry.value, reference_std=entry.std,
                source=entry.source)
    if entry.dataset_uncertain:
        return Verdict(**base, verdict=NOT_COMPARABLE, reason=f"dataset variant uncertain: {entry.dataset_uncertain}")
    scored = values.dropna(subset=["value"])
    if scored.empty:
        return Verdict(**base, verdict=NOT_COMPARABLE, reason="no completed run of ours")
    ours_specs = sorted(set(scored["spec"]))
    if len(ours_specs) != 1 or not spec_matches(entry.spec, ours_specs[0]):
        return Verdict(**base, verdict=NOT_COMPARABLE,
                       reason=f"different protocol: ours {', '.join(ours_specs)}, published {entry.spec}")
    n, std = len(scored), scored["value"].std(ddof=1) if len(scored) > 1 else math.nan
    rounding = (entry.resolution or 0) ** 2 / 12
    if entry.aggregate == "best-run":
        ours, se = scored["value"].max(), math.sqrt(std ** 2 + rounding)
    else:
        ours = scored["value"].mean()
        se = math.sqrt((0 if math.isnan(std) else std ** 2 / n) + (entry.std or 0) ** 2 / (entry.runs or 1) + rounding)
        if math.isnan(std) and not entry.std:
            se = math.nan
    measured = dict(ours=float(ours), ours_std=None if math.isnan(std) else float(std), seeds=n,
                    difference=float(ours - entry.value))
    if math.isnan(se) or se == 0:
        return Verdict(**base, **measured, verdict=NOT_COMPARABLE,
                       reason="no noise estimate: run at least two seeds (the paper gives no std)")
    z = (ours - entry.value) / se
    verdict = (REPRODUCED if abs(z) <= REPRODUCED_SE else WITHIN_NOISE if abs(z) <= NOISE_SE
               else BELOW if z < 0 else ABOVE)
    notes = [f"ours: best of {n} seeds"] if entry.aggregate == "best-run" else []
    notes += [f"unstated in the source, ours taken: {', '.join(unstated(entry.spec))}"] if unstated(entry.spec) else []
    notes += [f"assumes: {entry.unconfirmed}"] if entry.unconfirmed else []
    reason = "; ".join(notes)
    return Verdict(**base, **measured, standard_errors=float(z), verdict=verdict, reason=reason)


def published_verdicts(entries: list[Published], summary: pd.DataFrame) -> list[Verdict]:
    """A verdict for every published entry whose method, variant and dataset we ran."""
    ran = summary.groupby(["dataset", "method", "variant"])
    verdicts = []
    for entry in entries:
        key = (entry.dataset, entry.method, entry.variant)
        if key not in ran.groups:
            continue
        rows = ran.get_group(key)
        verdicts.append(judge_published(entry, rows[rows["metric"] == entry.metric]))
    return verdicts


def golden_tolerance(std: float, seeds: int) -> float:
    """The deterministic rule: three standard errors of the golden mean, never below MIN_TOLERANCE."""
    spread = 0.0 if math.isnan(std) or seeds < 2 else 3 * std / math.sqrt(seeds)
    return max(spread, MIN_TOLERANCE)


def band_tolerance(std: float, runs: int, check_seeds: int, alpha: float) -> float:
    """The band rule: how far the mean of `check_seeds` new runs may fall from the mean of `runs`
    golden runs (sample std `std`) before a one-sided test at level `alpha` calls it a change,
        t(runs - 1, 1 - alpha) · std · sqrt(1/runs + 1/check_seeds),
    the prediction interval of a mean under normal noise; never below MIN_TOLERANCE. With one
    golden run there is no spread to go by: infinite."""
    if runs < 2 or math.isnan(std):
        return math.inf
    from scipy.stats import t
    return max(float(t.ppf(1 - alpha, runs - 1)) * std * math.sqrt(1 / runs + 1 / check_seeds), MIN_TOLERANCE)


def golden_verdicts(golden: pd.DataFrame, current: pd.DataFrame, machines: str = "") -> list[Verdict]:
    """Compare current means (columns dataset, method, variant, metric, spec, mean, std, seeds)
    with the golden file; `machines` says how the current runs' kernels compare with the golden
    runs' (bench/golden.py), for the reason of every flagged value."""
    keys = ["dataset", "method", "variant", "metric"]
    current = current[keys + ["spec", "mean", "std", "seeds"]]
    merged = golden.merge(current, on=keys, how="left", suffixes=("_golden", ""))
    verdicts = []
    for row in merged.itertuples(index=False):
        base = dict(kind="golden", dataset=row.dataset, method=row.method, variant=row.variant, metric=row.metric,
                    spec=row.spec_golden, reference=row.mean_golden, reference_std=row.std_golden,
                    source="evaluation/golden")
        if pd.isna(row.mean_golden):          # a metric the method cannot give (n/a)
            verdict = OK if pd.isna(row.mean) else CHANGED
            verdicts.append(Verdict(**base, verdict=verdict, reason="not available in the golden run"))
            continue
        if pd.isna(row.mean):
            verdicts.append(Verdict(**base, verdict=REGRESSION, reason="no current result"))
            continue
        if row.spec != row.spec_golden:
            verdicts.append(Verdict(**base, ours=float(row.mean), seeds=int(row.seeds), verdict=REGRESSION,
                                    reason=f"spec changed to {row.spec}"))
            continue
        difference = row.mean - row.mean_golden
        gain = -difference if METRICS[row.metric].lower_is_better else difference
        verdict = (REGRESSION if gain < -row.tolerance else CHANGED if gain > row.tolerance else OK)
        band = f"{row.rule} band (±{row.tolerance:.4g} around {row.mean_golden:.4g}, {row.runs} golden runs)"
        reason = (f"within the {band}" if verdict == OK else
                  f"{'worse' if verdict == REGRESSION else 'better'} by {abs(gain):.4g}: {abs(gain) - row.tolerance:.4g} "
                  f"outside the {band}; {machines or 'kernels of the current runs unknown'}; "
                  "if intended, update with `python -m bench golden`")
        verdicts.append(Verdict(**base, ours=float(row.mean), ours_std=None if pd.isna(row.std) else float(row.std),
                                seeds=int(row.seeds), difference=float(difference), verdict=verdict, reason=reason))
    return verdicts
