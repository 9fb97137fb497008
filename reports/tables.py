"""The leaderboard model: per dataset and track, our rows (mean ± std over seeds), the
published numbers of the same spec beside them, and the reproduction verdicts.

Rendering to Markdown, LaTeX and HTML lives in reports/render.py; this module decides what
goes in a table, not how it looks. A column is one metric with one spec: a published number
enters a column only when its spec matches the column's (evaluation.published.spec_matches)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evaluation import METRICS, claims
from evaluation.published import NotTranscribed, Published, spec_matches
from evaluation.verdicts import Verdict, published_verdicts

KEYS = ["dataset", "method", "variant", "metric", "spec"]


@dataclass(frozen=True)
class Cell:
    mean: float | None
    std: float | None = None
    best: bool = False


@dataclass
class Row:
    method: str
    variant: str
    seeds: str                                   # "3", or "best run" / "mean" for a published row
    cells: dict[str, Cell]
    source: str = ""                             # where a published row comes from
    caveat: str = ""                             # why its numbers are not the method's (under-trained here)


@dataclass
class Section:
    dataset: str
    track: str
    metrics: list[str]
    specs: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    published: list[Row] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)   # metric -> why some runs have no value


@dataclass
class MethodRuns:
    """What shows whether a method learned on a dataset: its training curves (all its runs) and
    every run's sample grid and traversals, each as (caption, PNG)."""
    dataset: str
    method: str
    curves: Path | None
    images: list[tuple[str, Path]]


@dataclass
class Claims:
    """The papers' claims judged on this suite's runs: a row per comparison that has runs on
    both sides, and the ids of the rest (no comparison for the suite, or a side not run); and
    the suite's own learning checks (its `learns` block), judged alike."""
    verdicts: list[claims.ClaimVerdict]
    not_run: list[str]
    learning: list[claims.ClaimVerdict] = field(default_factory=list)


UNDER_TRAINED = "under-trained at this budget"


def claim_verdicts(summary: pd.DataFrame, registered: list[claims.Claim], suite: str,
                   checks: list[claims.Claim] = ()) -> Claims:
    lookup = claims.summary_lookup(summary)
    judged = claims.verdicts(registered, suite, lookup)
    not_run = claims.not_run_here(registered, suite) + [v.claim.id for v in judged if v.verdict == claims.NOT_RUN]
    return Claims([v for v in judged if v.verdict != claims.NOT_RUN], sorted(set(not_run)),
                  claims.verdicts(list(checks), suite, lookup))


def caveats(learning: list[claims.ClaimVerdict]) -> dict[tuple[str, str, str], str]:
    """Per run group whose learning check ran and does not hold: "under-trained at this budget",
    with the check's numbers and the curve that shows it at larger budgets."""
    marked = {}
    for v in learning:
        if v.verdict in (claims.HOLDS, claims.NOT_RUN):
            continue
        marked[(v.dataset, *v.run)] = (f"{UNDER_TRAINED}: {v.claim.metric} not shown above {v.than.label} "
                                                f"({v.verdict}: {v.numbers()}); at larger budgets: {v.claim.evidence}")
    return marked


def summarise(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1) and number of seeds per dataset, method, variant, metric and spec."""
    scored = summary[summary["status"] == "completed"].dropna(subset=["spec"])
    table = scored.groupby(KEYS, sort=False)["value"].agg(mean="mean", std="std", seeds="count").reset_index()
    table["metric_order"] = table["metric"].map({name: i for i, name in enumerate(METRICS)})
    return (table.sort_values(["dataset", "method", "variant", "metric_order"])
                 .drop(columns="metric_order").reset_index(drop=True))


def not_transcribed_for(summary: pd.DataFrame, not_transcribed: list[NotTranscribed]) -> list[NotTranscribed]:
    """The published results not yet transcribed for the methods this suite ran."""
    return [n for n in not_transcribed if n.method in set(summary["method"])]


def failed_runs(summary: pd.DataFrame) -> list[str]:
    """Runs that did not complete, with their status and error: shown as such, never as numbers."""
    failed = summary[summary["status"] != "completed"].drop_duplicates(["dataset", "method", "variant", "seed"])
    return [f"{r.dataset}/{r.method}/{r.variant}/seed{r.seed}: {r.status}"
            + (f" ({r.unavailable})" if isinstance(r.unavailable, str) else "") for r in failed.itertuples(index=False)]


def sections(summary: pd.DataFrame, published: list[Published],
             marked: dict[tuple[str, str, str], str] | None = None) -> list[Section]:
    """`marked`: the caveat of each run group that has one (`caveats`)."""
    table = summarise(summary)
    table["track"] = table["metric"].map(lambda m: METRICS[m].track)
    verdicts = published_verdicts(published, summary)
    missing = summary[summary["value"].isna() & summary["unavailable"].notna() & (summary["status"] == "completed")]
    result = []
    for (dataset, track), rows in table.groupby(["dataset", "track"], sort=True):
        metrics = list(dict.fromkeys(rows["metric"]))
        specs = dict(rows.drop_duplicates("metric")[["metric", "spec"]].itertuples(index=False))
        section = Section(dataset, track, metrics, specs)
        best = _best_means(rows.dropna(subset=["mean"]))
        for (method, variant), group in rows.groupby(["method", "variant"], sort=False):
            cells = {m.metric: Cell(m.mean, None if pd.isna(m.std) else m.std, m.mean == best.get(m.metric))
                     for m in group.itertuples(index=False)}
            section.rows.append(Row(method, variant, str(group["seeds"].max()), cells,
                                    caveat=(marked or {}).get((dataset, method, variant), "")))
        for entry in published:
            if entry.dataset == dataset and spec_matches(entry.spec, specs.get(entry.metric, "")):
                label = entry.quoted_from.split(" (")[0] if entry.quoted_from else entry.method
                section.published.append(Row(label, entry.variant, entry.aggregate.replace("-", " "),
                                             {entry.metric: Cell(entry.value, entry.std)}, entry.source))
        section.verdicts = [v for v in verdicts if v.dataset == dataset and v.metric in metrics]
        reasons = missing[(missing["dataset"] == dataset) & missing["metric"].isin(metrics)]
        section.unavailable = dict(reasons.drop_duplicates("metric")[["metric", "unavailable"]].itertuples(index=False))
        result.append(section)
    return result


def _best_means(scored: pd.DataFrame) -> dict[str, float]:
    """Per metric, the best of our means, only where two or more runs compete: a value alone in
    its column is not "the best" of anything."""
    return {metric: (group["mean"].min() if METRICS[metric].lower_is_better else group["mean"].max())
            for metric, group in scored.groupby("metric") if len(group) >= 2}


def better(metric: str) -> str:
    """Which way the metric is better: ↓ for distances and distortions, ↑ for scores."""
    return "↓" if METRICS[metric].lower_is_better else "↑"


def csv_table(summary: pd.DataFrame) -> str:
    return summarise(summary).to_csv(index=False, float_format="%.6g")
