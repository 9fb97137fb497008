"""The registry of claims, evaluation/claims/<paper>.yaml, and a verdict per claim from our seeds.

A claim is a comparison a paper makes, in our words, with where the paper makes it: on a
dataset and a metric, one method (variant) is better than another, than a stated value, or
than another metric of the same runs (an ablation read off one run, e.g. after pre-training).
Variants are suite-specific, so a claim says per suite which runs stand for its two sides.
The paper is that of evaluation/published/<paper>.yaml (its arXiv id and version).

The rule: from the per-seed values of the two sides (summary.csv rows of one spec), the
LEVEL (95 %, two-sided) t confidence interval of the difference better − than:
    two groups    Welch: se = sqrt(s1²/n1 + s2²/n2), Welch–Satterthwaite degrees of freedom
    a value       one sample: se = s/√n, n − 1 degrees of freedom
    two metrics   of the same runs, paired by seed: the one-sample interval of the differences
HOLDS when the whole interval is on the claimed side of 0 (above for a higher-is-better
metric, below for a lower-is-better one), REVERSED when it is on the other side, UNDECIDED
when it contains 0. A side with one seed has no variance estimate: UNDECIDED ("needs ≥ 2
seeds"). When every value on both sides is the same (se = 0, deterministic methods), the sign
of the difference decides; no difference is UNDECIDED. NOT-RUN: the claim has no comparison
for the suite, or a side has no completed run. NOT-COMPARABLE: a side ran but has no value of
the metric (with the reason), or the sides' protocols differ (two groups: the same spec; two
metrics of one run: the same scored split).

Golden: the same rule on the golden file's mean and std of each group, with n the seeds a
check runs (its `check_seeds`): the verdict those seeds would give if the numbers were the
golden ones. With n = all golden runs (seeds × kernel paths) the golden interval would be
narrower than any check's, and an unchanged suite would lose claims by chance. The golden
file keeps no per-seed values: a two-metric claim is judged there as two groups (Welch).
A claim that HOLDS in the golden numbers and not in the current runs is a REGRESSION; any
other change of verdict is CHANGED.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from common.schema import ConfigError, load_yaml, validate
from evaluation.metrics import METRICS
from evaluation.published import PUBLISHED_DIR, read_from, spec_split
from evaluation.verdicts import CHANGED, NOT_COMPARABLE, OK, REGRESSION, Verdict

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
LEVEL = 0.95
HOLDS, REVERSED, UNDECIDED, NOT_RUN = "HOLDS", "REVERSED", "UNDECIDED", "NOT-RUN"
RULE = (f"HOLDS when the whole {LEVEL:.0%} t interval of the difference better − than (Welch for two run groups, "
        "one-sample against a stated value, paired by seed for two metrics of the same runs) is on the claimed side "
        "of 0, REVERSED when it is on the other side, UNDECIDED when it contains 0 or a side has one seed; "
        "NOT-COMPARABLE when a side has no value of the metric or the two protocols differ.")


@dataclass(frozen=True)
class Comparison:
    dataset: str
    better: tuple[str, str]                   # method, variant
    than: tuple[str, str] | None = None       # another run group ...
    than_value: float | None = None           # ... or a stated value ...
    than_metric: str | None = None            # ... or another metric of the same runs


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str                                # the registry stem, e.g. "nmm"
    source: str                               # e.g. "arXiv 2107.02453v2, abstract"
    claim: str                                # in our words
    metric: str
    lower_is_better: bool
    compare: dict[str, tuple[Comparison, ...]]   # suite -> one comparison per dataset
    note: str | None = None
    evidence: str | None = None               # a learning check's curve at larger budgets (a repository file)


@dataclass(frozen=True)
class Names:
    """The registered names a claim may use (bench.config.registered_names builds them)."""
    variants: dict[str, set[str]]             # method -> its variants
    datasets: set[str]
    metrics: set[str]
    suites: set[str]


# Loading and the lint ------------------------------------------------------------------------

def load(directory: Path = CLAIMS_DIR, published_dir: Path = PUBLISHED_DIR, names: Names | None = None) -> list[Claim]:
    """Every claim of every file, linted against the schema; with `names`, every method,
    variant, dataset, metric and suite against the registries."""
    claims = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "schema.yaml":
            continue
        where = f"evaluation/claims/{path.name}"
        document = load_yaml(path)
        validate(document, CLAIMS_DIR / "schema.yaml", "file", where)
        paper_file = published_dir / f"{document['paper']}.yaml"
        if not paper_file.exists():
            raise ConfigError(f"{where}: paper '{document['paper']}' has no file {paper_file.name} in "
                              "evaluation/published/: name a registered paper")
        source = read_from(load_yaml(paper_file)["paper"])
        claims += [_claim(document["paper"], source, raw, f"{where}: claims.{i}", names)
                   for i, raw in enumerate(document["claims"])]
    ids = [c.id for c in claims]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"claims: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return claims


def _claim(paper: str, source: str, raw: dict, where: str, names: Names | None) -> Claim:
    metric = raw["metric"]
    if "direction" in raw:
        lower = raw["direction"] == "lower"
    elif metric in METRICS:
        lower = METRICS[metric].lower_is_better
    else:
        raise ConfigError(f"{where}: unknown metric '{metric}' and no `direction`: name a registered metric")
    compare = {suite: tuple(_comparisons(spec)) for suite, spec in raw["compare"].items()}
    claim = Claim(raw["id"], paper, f"{source}, {raw['where']}", raw["claim"], metric, lower, compare, raw.get("note"))
    if names is not None:
        _lint(claim, names, where)
    return claim


def _comparisons(spec: dict):
    better = tuple(spec["better"].split("/"))
    than = spec["than"]
    for dataset in spec.get("datasets") or [spec["dataset"]]:
        if isinstance(than, dict):
            yield Comparison(dataset, better, than_metric=than["metric"])
        elif isinstance(than, str):
            yield Comparison(dataset, better, than=tuple(than.split("/")))
        else:
            yield Comparison(dataset, better, than_value=float(than))


def _lint(claim: Claim, names: Names, where: str) -> None:
    def check(kind: str, name: str, valid) -> None:
        if name not in valid:
            raise ConfigError(f"{where}: unknown {kind} '{name}'; valid: {', '.join(sorted(valid))}")

    check("metric", claim.metric, names.metrics)
    for suite, comparisons in claim.compare.items():
        check("suite", suite, names.suites)
        for c in comparisons:
            check("dataset", c.dataset, names.datasets)
            for method, variant in [c.better] + ([c.than] if c.than else []):
                check("method", method, names.variants)
                check(f"variant of {method}", variant, names.variants[method])
            if c.than_metric:
                check("metric", c.than_metric, names.metrics)


def learning_checks(suite_name: str, suite: dict) -> list[Claim]:
    """A suite's `learns` block as claims of its own: each run group it names learns at the
    suite's budget, its metric above a stated value or another group (e.g. a random-code
    baseline), judged by the same rule. Their source is the suite, not a paper."""
    checks = []
    for raw in suite.get("learns", []):
        method, variant = raw["run"].split("/")
        above = raw["above"]
        spec = {"dataset": raw["dataset"], "better": raw["run"], "than": above}
        checks.append(Claim(
            id=f"learns-{method}-{variant}-{raw['metric']}", paper="", metric=raw["metric"],
            source=f"config/suites/{suite_name}.yaml, learns",
            claim=f"{raw['run']} learns at this budget: {raw['metric']} above {above}",
            lower_is_better=METRICS[raw["metric"]].lower_is_better,
            compare={suite_name: tuple(_comparisons(spec))}, note=raw.get("note"), evidence=raw["evidence"]))
    return checks


# The rule ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """One side of a comparison: a run group's values of one metric."""
    label: str                       # e.g. "nmm/laptop", "the stated value"
    spec: str | None
    mean: float | None
    std: float | None
    n: int
    seeds: tuple[tuple[int, float], ...] = ()   # (seed, value), where per-seed values are known
    why: str = ""                    # why there is no value

    def text(self) -> str:
        if self.mean is None:
            return "n/a"
        return (f"{self.mean:.3f}" + ("" if self.std is None else f" ± {self.std:.3f}")
                + (f" ({self.n})" if self.n else ""))      # n = 0: a stated value


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    suite: str
    dataset: str
    verdict: str
    better: Group | None = None
    than: Group | None = None
    difference: float | None = None  # better − than
    low: float | None = None         # the interval of the difference
    high: float | None = None
    test: str = ""                   # Welch, one-sample or paired
    reason: str = ""

    def interval(self) -> str:
        if self.low is None:
            return ""
        return f"[{self.low:+.3f}, {self.high:+.3f}]"

    def numbers(self) -> str:
        """The two sides, the difference and its interval, in words."""
        sides = " vs ".join(f"{g.label} {g.text()}" for g in (self.better, self.than) if g is not None)
        if self.difference is None:
            return sides
        return f"{sides}: difference {self.difference:+.3f}" + (
            f", {self.test} {LEVEL:.0%} interval {self.interval()}" if self.low is not None else "")

    @property
    def run(self) -> tuple[str, str]:
        """The method and variant of the side claimed better."""
        return next(c.better for c in self.claim.compare[self.suite] if c.dataset == self.dataset)

    def as_verdict(self) -> Verdict:
        """As a row of verdicts.csv, in the columns of every other verdict."""
        method, variant = self.run
        return Verdict(kind="claim", dataset=self.dataset, method=method, variant=variant, metric=self.claim.metric,
                       spec=_stat(self.better, "spec") or "", verdict=self.verdict, ours=_stat(self.better, "mean"),
                       ours_std=_stat(self.better, "std"), seeds=_stat(self.better, "n") or 0,
                       reference=_stat(self.than, "mean"), reference_std=_stat(self.than, "std"),
                       difference=self.difference, reason="; ".join(filter(None, [self.numbers(), self.reason])),
                       source=self.claim.source, claim=self.claim.id)


def _stat(group: Group | None, name: str) -> float | None:
    return None if group is None else getattr(group, name)


Lookup = Callable[[str, str, str, str], "Group | None"]      # dataset, method, variant, metric -> a side


def judge(claim: Claim, suite: str, comparison: Comparison, lookup: Lookup) -> ClaimVerdict:
    """The verdict of one comparison; `lookup(dataset, method, variant, metric)` gives a side,
    or None where the group has no completed run."""
    base = dict(claim=claim, suite=suite, dataset=comparison.dataset)
    method, variant = comparison.better
    better = lookup(comparison.dataset, method, variant, claim.metric)
    if comparison.than_value is not None:
        than = Group("the stated value", None, comparison.than_value, None, 0)
    elif comparison.than_metric:
        than = lookup(comparison.dataset, method, variant, comparison.than_metric)
        than = than and replace(than, label=f"the same runs' {comparison.than_metric}")
    else:
        than = lookup(comparison.dataset, *comparison.than, claim.metric)
    sides = [(f"{method}/{variant}", better)] + ([("/".join(comparison.than), than)] if comparison.than else [])
    not_run = [label for label, group in sides if group is None]
    if not_run:
        return ClaimVerdict(**base, verdict=NOT_RUN, better=better, than=than,
                            reason=f"no completed run of {' nor '.join(not_run)} on {comparison.dataset} in {suite}")
    base.update(better=better, than=than)
    for group in (better, than):
        if group.mean is None:
            return ClaimVerdict(**base, verdict=NOT_COMPARABLE, reason=f"{group.label} has no value: {group.why}")
    if comparison.than_metric and spec_split(better.spec or "") != spec_split(than.spec or ""):
        return ClaimVerdict(**base, verdict=NOT_COMPARABLE, reason=f"different splits: {better.spec}, {than.spec}")
    if comparison.than and better.spec != than.spec:
        return ClaimVerdict(**base, verdict=NOT_COMPARABLE, reason=f"different protocols: {better.spec}, {than.spec}")
    test, difference, se, df = _difference(better, than, comparison)
    base.update(test=test, difference=difference)
    if df is None:
        return ClaimVerdict(**base, verdict=UNDECIDED, reason="needs ≥ 2 seeds on each side")
    if se == 0:                    # no spread at all: the difference is exact
        low = high = difference
    else:
        from scipy.stats import t
        half = float(t.ppf(0.5 + LEVEL / 2, df)) * se
        low, high = difference - half, difference + half
    gain_low, gain_high = (-high, -low) if claim.lower_is_better else (low, high)
    verdict = HOLDS if gain_low > 0 else REVERSED if gain_high < 0 else UNDECIDED
    return ClaimVerdict(**base, verdict=verdict, low=low, high=high)


def _difference(better: Group, than: Group, comparison: Comparison) -> tuple[str, float, float, float | None]:
    """The test, the difference better − than, its standard error and degrees of freedom
    (None: no variance estimate)."""
    if comparison.than_metric and better.seeds and than.seeds:
        paired = dict(than.seeds)
        differences = pd.Series([value - paired[seed] for seed, value in better.seeds if seed in paired])
        n = len(differences)
        return "paired", float(differences.mean()), _se(differences.std(), n), n - 1 if n >= 2 else None
    if comparison.than_value is not None:
        n = better.n
        return "one-sample", better.mean - than.mean, _se(better.std, n), n - 1 if n >= 2 else None
    if better.n < 2 or than.n < 2 or better.std is None or than.std is None:
        return "Welch", better.mean - than.mean, math.nan, None
    v1, v2 = better.std ** 2 / better.n, than.std ** 2 / than.n
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (better.n - 1) + v2 ** 2 / (than.n - 1)) if se > 0 else math.inf
    return "Welch", better.mean - than.mean, se, df


def _se(std: float | None, n: int) -> float:
    return math.nan if n < 2 or std is None or math.isnan(std) else std / math.sqrt(n)


# Sides from runs and from the golden file --------------------------------------------------

def summary_lookup(summary: pd.DataFrame) -> Lookup:
    """Sides from summary.csv: the completed runs' per-seed values."""
    completed = summary[summary["status"] == "completed"]
    groups = {key: rows for key, rows in completed.groupby(["dataset", "method", "variant"])}

    def lookup(dataset: str, method: str, variant: str, metric: str) -> Group | None:
        rows = groups.get((dataset, method, variant))
        if rows is None:
            return None
        rows = rows[rows["metric"] == metric]
        scored = rows.dropna(subset=["value"])
        label = f"{method}/{variant}"
        if scored.empty:
            why = next((w for w in rows["unavailable"] if isinstance(w, str)), f"no {metric} in its results")
            return Group(label, None, None, None, 0, why=why)
        specs = sorted(set(scored["spec"]))
        if len(specs) > 1:
            return Group(label, None, None, None, 0, why=f"seeds of different specs: {', '.join(specs)}")
        values = scored["value"]
        std = float(values.std()) if len(values) > 1 else None
        return Group(label, specs[0], float(values.mean()), std, len(values),
                     tuple(zip(scored["seed"].astype(int), values.astype(float))))

    return lookup


def golden_lookup(golden: pd.DataFrame) -> Lookup:
    """Sides from a golden file: mean and std per group, n = the seeds a check runs."""
    rows = {(r.dataset, r.method, r.variant, r.metric): r for r in golden.itertuples(index=False)}
    ran = {key[:3] for key in rows}

    def lookup(dataset: str, method: str, variant: str, metric: str) -> Group | None:
        if (dataset, method, variant) not in ran:
            return None
        label, row = f"{method}/{variant}", rows.get((dataset, method, variant, metric))
        if row is None or pd.isna(row.mean):
            return Group(label, None, None, None, 0, why=f"no {metric} in the golden file")
        n = int(min(row.runs, row.check_seeds))
        return Group(label, row.spec, float(row.mean), None if pd.isna(row.std) else float(row.std), n)

    return lookup


def verdicts(claims: list[Claim], suite: str, lookup: Lookup) -> list[ClaimVerdict]:
    """A verdict per comparison of every claim that has one for `suite`."""
    return [judge(claim, suite, comparison, lookup) for claim in claims for comparison in claim.compare.get(suite, ())]


def not_run_here(claims: list[Claim], suite: str) -> list[str]:
    """The ids of the claims with no comparison for `suite`."""
    return [claim.id for claim in claims if suite not in claim.compare]


def golden_changes(golden: list[ClaimVerdict], current: list[ClaimVerdict]) -> list[Verdict]:
    """Per comparison: OK when the verdict is the golden one, REGRESSION when a claim that
    HOLDS in the golden numbers does not hold now, else CHANGED."""
    before = {(v.claim.id, v.dataset): v.verdict for v in golden}
    changes = []
    for v in current:
        was = before.get((v.claim.id, v.dataset), NOT_RUN)
        outcome = OK if was == v.verdict else REGRESSION if was == HOLDS else CHANGED
        now = "; ".join(filter(None, [v.numbers(), v.reason]))
        changes.append(replace(v.as_verdict(), kind="golden-claim", verdict=outcome, source="evaluation/golden",
                               reason=f"golden {was}, now {v.verdict}: {now}"))
    return changes
