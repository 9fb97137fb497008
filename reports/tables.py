"""The leaderboard model: per dataset and track, our rows (mean ± std over seeds), the
published numbers of the same spec beside them, and the reproduction verdicts.

Rendering to Markdown, LaTeX and HTML lives in reports/render.py; this module decides what
goes in a table, not how it looks. A column is one metric with one spec: a published number
enters a column only when its spec matches the column's (evaluation.published.spec_matches)."""
from __future__ import annotations

from collections import Counter
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
    seeds: int = 0                               # ours: how many seeds the mean is of


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

    def under_trained(self, method: str, variant: str) -> bool:
        return any(r.caveat for r in self.rows if (r.method, r.variant) == (method, variant))


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

    @property
    def marked(self) -> dict[tuple[str, str, str], str]:
        return caveats(self.learning)


UNDER_TRAINED = "under-trained at this budget"
# A mean of fewer seeds has no spread to judge it by; an under-trained group's numbers are not
# its method's: neither is ranked "best".
RANKED_SEEDS = 2


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


def side_caveats(v: claims.ClaimVerdict, marked: dict[tuple[str, str, str], str]) -> tuple[str, str]:
    """The caveats of the claim's two sides (better, than), "" for a side not marked under-trained
    or not a run group of its own (a stated value; another metric of the better side's runs,
    marked there)."""
    comparison = next(c for c in v.claim.compare[v.suite] if c.dataset == v.dataset)
    return (marked.get((v.dataset, *comparison.better), ""),
            marked.get((v.dataset, *comparison.than), "") if comparison.than else "")


def provenance(records: list[dict], unrecorded: int = 0) -> str:
    """Where the runs come from, from their run.json records: the commit, CPU and precision that
    most share, and how many runs differ, e.g. "commit 41162ea (2 runs at 8c5f674) · CPU AMD EPYC
    · precision bf16 (12 runs in fp32)"; `unrecorded`: the runs without a record."""
    if not records:
        return "no run records (run.json) to say which commit, CPU or precision"

    def commit(record: dict) -> str:
        git = record.get("git") or {}
        return (git.get("commit") or "unknown")[:7] + ("-dirty" if git.get("dirty") else "")

    parts = [_shared("commit", [commit(r) for r in records], "at"),
             _shared("CPU", [(r.get("machine") or {}).get("cpu_model") or "unknown" for r in records], "on"),
             # runs recorded before precision was recorded ran in fp32 (bench/runner.py reads them so)
             _shared("precision", [r.get("precision", "fp32") for r in records], "in")]
    if unrecorded:
        parts.append(f"{unrecorded} run{'s' * (unrecorded > 1)} without a run.json")
    return " · ".join(parts)


def _shared(what: str, values: list[str], preposition: str) -> str:
    (common, _), *others = Counter(values).most_common()
    differ = ", ".join(f"{n} run{'s' * (n > 1)} {preposition} {value}" for value, n in others)
    return f"{what} {common}" + (f" ({differ})" if differ else "")


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
    marked = marked or {}
    table = summarise(summary)
    table["track"] = table["metric"].map(lambda m: METRICS[m].track)
    verdicts = published_verdicts(published, summary)
    missing = summary[summary["value"].isna() & summary["unavailable"].notna() & (summary["status"] == "completed")]
    result = []
    for (dataset, track), rows in table.groupby(["dataset", "track"], sort=True):
        metrics = list(dict.fromkeys(rows["metric"]))
        specs = dict(rows.drop_duplicates("metric")[["metric", "spec"]].itertuples(index=False))
        section = Section(dataset, track, metrics, specs)
        rows = rows.assign(caveat=[marked.get((dataset, *group), "") for group in zip(rows["method"], rows["variant"])])
        rows = rows.assign(ranked=(rows["seeds"] >= RANKED_SEEDS) & (rows["caveat"] == ""))
        best = _best_means(rows[rows["ranked"]].dropna(subset=["mean"]))
        for (method, variant), group in rows.groupby(["method", "variant"], sort=False):
            cells = {m.metric: Cell(m.mean, None if pd.isna(m.std) else m.std,
                                    bool(m.ranked and m.mean == best.get(m.metric)), int(m.seeds))
                     for m in group.itertuples(index=False)}
            section.rows.append(Row(method, variant, str(group["seeds"].max()), cells, caveat=group["caveat"].iloc[0]))
        # One row per published (source, method, variant, aggregate), its metrics side by side.
        rows_by_source: dict[tuple, Row] = {}
        for entry in published:
            if entry.dataset == dataset and spec_matches(entry.spec, specs.get(entry.metric, "")):
                label = entry.quoted_from.split(" (")[0] if entry.quoted_from else entry.method
                key = (entry.source, label, entry.variant, entry.aggregate)
                if key not in rows_by_source:
                    rows_by_source[key] = Row(label, entry.variant, _published_as(entry), {}, entry.source)
                    section.published.append(rows_by_source[key])
                rows_by_source[key].cells[entry.metric] = Cell(entry.value, entry.std)
        section.verdicts = [v for v in verdicts if v.dataset == dataset and v.metric in metrics]
        reasons = missing[(missing["dataset"] == dataset) & missing["metric"].isin(metrics)]
        section.unavailable = dict(reasons.drop_duplicates("metric")[["metric", "unavailable"]].itertuples(index=False))
        result.append(section)
    return result


def _published_as(entry: Published) -> str:
    """What a published row is and where it comes from: "mean, ASPC-DA Table 6"."""
    paper, _, table = entry.source.rpartition(", ")
    return f"{entry.aggregate.replace('-', ' ')}, {paper.split(',')[0]} {table}"


def _best_means(ranked: pd.DataFrame) -> dict[str, float]:
    """Per metric, the best of the ranked means (RANKED_SEEDS or more seeds, not under-trained),
    only where two or more of them compete: a value alone in its column is not "the best" of anything."""
    return {metric: (group["mean"].min() if METRICS[metric].lower_is_better else group["mean"].max())
            for metric, group in ranked.groupby("metric") if len(group) >= 2}


def better(metric: str) -> str:
    """Which way the metric is better: ↓ for distances and distortions, ↑ for scores."""
    return "↓" if METRICS[metric].lower_is_better else "↑"


def csv_table(summary: pd.DataFrame) -> str:
    return summarise(summary).to_csv(index=False, float_format="%.6g")
