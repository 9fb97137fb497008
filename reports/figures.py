"""Figures of a suite: per dataset, one panel per metric, a bar per method/variant with the
standard deviation over seeds as error bars, and published numbers of the same spec as
black diamonds (on their method's bar) or dashed lines (baselines we do not run). Scores
in [0, 1] are drawn on that scale; distances (FID, GW, ...) on their own."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from common.files import atomic_path  # noqa: E402
from reports.tables import Section  # noqa: E402


def dataset_figure(summary: pd.DataFrame, dataset: str, dataset_sections: list[Section], path: Path) -> None:
    scored = summary[(summary["dataset"] == dataset) & (summary["status"] == "completed")].dropna(subset=["value"])
    scored = scored.assign(run=scored["method"] + " / " + scored["variant"])
    metrics = [m for s in dataset_sections for m in s.metrics if m in set(scored["metric"])]
    runs = sorted(set(scored["run"]))
    if not metrics:                              # every run of the dataset failed: say so
        fig, axis = plt.subplots(figsize=(5, 1.5))
        axis.axis("off")
        axis.text(0.5, 0.5, f"{dataset}: no completed runs (see Failed runs)", ha="center", va="center")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return
    stats = scored.groupby(["metric", "run"])["value"].agg(["mean", "std"])
    colours = dict(zip(runs, sns.color_palette("colorblind", len(runs))))
    sns.set_theme(style="whitegrid", font_scale=0.8)
    panel_width = max(1.9, 0.8 + 0.4 * len(runs))
    fig, axes = plt.subplots(1, len(metrics), figsize=(0.8 + panel_width * len(metrics), 3.6),
                             squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for x, run in enumerate(runs):
            if (metric, run) in stats.index:
                mean, std = stats.loc[(metric, run)]
                axis.bar(x, mean, color=colours[run], yerr=0 if pd.isna(std) else std, capsize=3, label=run)
        for row in (r for section in dataset_sections for r in section.published if metric in r.cells):
            label, value = f"{row.method} / {row.variant}", row.cells[metric].mean
            if label in runs:
                axis.scatter([runs.index(label)], [value], marker="D", color="black", zorder=5)
            else:
                axis.axhline(value, color="black", linestyle="--", linewidth=0.8)
                axis.text(0.98, value, f"{label} ({row.seeds})", transform=axis.get_yaxis_transform(),
                          fontsize=7, ha="right", va="bottom")
        axis.set_title(metric)
        axis.set_xticks([])
        axis.set_xlim(-0.6, len(runs) - 0.4)
        if axis.get_ylim()[1] <= 1.05:           # scores in [0, 1] share one scale; distances keep their own
            axis.set_ylim(0, 1.05)
        axis.set_ylabel("")
    axes[0][0].set_ylabel("mean ± sd over seeds")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[run]) for run in runs]
    fig.legend(handles, runs, loc="lower center", ncol=min(len(runs), 4), frameon=False)
    fig.suptitle(f"{dataset}: ◆ published (same method and protocol), dashed: quoted baselines")
    fig.tight_layout(rect=(0, 0.06 * ((len(runs) + 3) // 4), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
