"""Leaderboards from a suite's summary.csv: mean ± std over seeds, one table per dataset.

Values of different specs are never put in one column: a column is one metric *and* one
spec, and the spec is written under the table."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.files import atomic_path, write_text
from evaluation import METRICS

KEYS = ["dataset", "method", "variant", "metric", "spec"]


def summarise(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1) and number of seeds per dataset, method, variant, metric and spec."""
    scored = summary[summary["status"] == "completed"].dropna(subset=["spec"])
    grouped = scored.groupby(KEYS, sort=False)["value"]
    table = grouped.agg(mean="mean", std="std", seeds="count").reset_index()
    order = {name: i for i, name in enumerate(METRICS)}
    table["metric_order"] = table["metric"].map(order)
    return (table.sort_values(["dataset", "method", "variant", "metric_order"])
                 .drop(columns="metric_order").reset_index(drop=True))


def format_cell(mean: float, std: float, seeds: int) -> str:
    if seeds == 0 or pd.isna(mean):
        return "n/a"
    spread = "" if pd.isna(std) else f" ± {std:.3f}"
    return f"{mean:.3f}{spread}"


def markdown(summary: pd.DataFrame, suite: str, description: str = "") -> str:
    table = summarise(summary)
    lines = [f"# Leaderboard: {suite} suite", ""]
    if description:
        lines += [description.strip(), ""]
    lines += ["Mean ± standard deviation over seeds; **bold** is the best mean in each column. "
              "Columns are metrics with their exact protocol (spec) listed under each table; "
              "n/a: the method does not give what the metric needs.", ""]
    failed = summary[~summary["status"].isin(["completed"])]
    for dataset, rows in table.groupby("dataset", sort=False):
        lines += [f"## {dataset}", ""]
        metrics = list(dict.fromkeys(rows["metric"]))
        header = ["method", "variant", "seeds"] + metrics
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(metrics)) + "|"]
        best = rows.groupby("metric")["mean"].max()
        for (method, variant), group in rows.groupby(["method", "variant"], sort=False):
            by_metric = group.set_index("metric")
            cells = []
            for metric in metrics:
                if metric not in by_metric.index:
                    cells.append("")
                    continue
                entry = by_metric.loc[metric]
                cell = format_cell(entry["mean"], entry["std"], entry["seeds"])
                cells.append(f"**{cell}**" if entry["seeds"] and entry["mean"] == best[metric] else cell)
            lines.append("| " + " | ".join([method, variant, str(group["seeds"].max())] + cells) + " |")
        specs = rows.drop_duplicates("metric")[["metric", "spec"]]
        lines += [""] + [f"- `{m}`: `{s}`" for m, s in specs.itertuples(index=False)] + [""]
        broken = failed[failed["dataset"] == dataset]
        for run in broken.itertuples(index=False):
            lines.append(f"- run {run.method}/{run.variant}/seed{run.seed}: **{run.status}**"
                         + (f" ({run.unavailable})" if isinstance(run.unavailable, str) else ""))
        if len(broken):
            lines.append("")
    return "\n".join(lines)


def csv_table(summary: pd.DataFrame) -> str:
    return summarise(summary).to_csv(index=False, float_format="%.6g")


def figure(summary: pd.DataFrame, path: Path) -> None:
    """Bar chart per dataset: mean over seeds with the standard deviation as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import seaborn as sns

    scored = summary[(summary["status"] == "completed")].dropna(subset=["value"]).copy()
    scored["method / variant"] = scored["method"] + " / " + scored["variant"]
    order = [name for name in METRICS if name in set(scored["metric"])]
    grid = sns.catplot(data=scored, kind="bar", x="metric", y="value", order=order, hue="method / variant", col="dataset",
                       errorbar="sd", capsize=0.1, height=3.6, aspect=1.5, palette="colorblind")
    grid.set_titles("{col_name}")
    grid.set_axis_labels("", "score (mean ± sd over seeds)")
    grid.set(ylim=(0, 1.05))
    for axis in grid.axes.flat:
        axis.tick_params(axis="x", rotation=30)
    with atomic_path(path) as tmp:
        grid.savefig(tmp, format="png", dpi=120)


def render(summary_csv: Path, out_dir: Path, suite: str, description: str = "") -> list[Path]:
    """Write leaderboard.md, leaderboard.csv and figures/scores.png; returns their paths."""
    summary = pd.read_csv(summary_csv)
    written = [out_dir / "leaderboard.md", out_dir / "leaderboard.csv", out_dir / "figures" / "scores.png"]
    write_text(written[0], markdown(summary, suite, description))
    write_text(written[1], csv_table(summary))
    figure(summary, written[2])
    return written
