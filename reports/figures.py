"""Figures of a suite, drawn to be read at a normal size: small multiples that wrap at
COLUMNS panels a row, each at least PANEL_PX pixels wide, and one colour per method/variant
across every figure of the suite (`run_colours`: a hue per method, a shade per variant).

- dataset_figure: per dataset, a panel per metric (↑/↓ in its title), a horizontal bar per
  method/variant with the standard deviation over seeds as error bar; published numbers of
  the same spec as black diamonds (on their method's bar) or dashed lines (baselines we do
  not run). Scores in [0, 1] are drawn on that scale; distances (FID, GW, ...) on their own.
- training_curves: per dataset and method, a panel per numeric column of its runs'
  train_log.csv that changes (its health signals first, see HEALTH) against the epoch,
  every variant and seed overlaid.
- learning_curve: a claim's two sides against training images (bench/curves.py)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from common.files import atomic_path  # noqa: E402
from reports.tables import UNDER_TRAINED, Section, better  # noqa: E402

COLUMNS = 4                      # panels a row, at most
PANEL_INCHES = 3.4               # at DPI: 340 px a panel
PANEL_PX = 300
DPI = 100
# The columns of train_log.csv that show whether a method is healthy, in the order drawn; any
# other numeric column follows. Bookkeeping columns are not drawn.
HEALTH = ("loss", "clusters_used", "largest_cluster", "anchoring_lambda", "components", "mse", "kl")
BOOKKEEPING = {"seconds", "epoch"}
MAX_CURVES = 8                   # panels of one training-curves figure (two rows)
SEED_STYLES = ("-", "--", ":", "-.")


def run_colours(labels) -> dict[str, tuple]:
    """A colour per "method / variant" label, the same in every figure of a suite: a hue per
    method, its variants in lighter shades of it."""
    labels = sorted(set(labels))
    methods = list(dict.fromkeys(label.split(" / ")[0] for label in labels))
    hues = dict(zip(methods, sns.color_palette("colorblind" if len(methods) <= 10 else "husl", len(methods))))
    colours = {}
    for method in methods:
        variants = [label for label in labels if label.split(" / ")[0] == method]
        for i, label in enumerate(variants):
            lighter = 0.55 * i / max(len(variants) - 1, 1)       # towards white
            colours[label] = tuple(c + (1 - c) * lighter for c in hues[method])
    return colours


def _grid(panels: int, row_inches: float, label_inches: float, sharey: bool):
    """A figure of `panels` panels, COLUMNS a row at most; the unused panels of the last row hidden."""
    columns = min(panels, COLUMNS)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(label_inches + PANEL_INCHES * columns, 0.9 + row_inches * rows),
                             squeeze=False, sharey=sharey)
    flat = list(axes.flat)
    for axis in flat[panels:]:
        axis.set_visible(False)
    return fig, flat[:panels]


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def dataset_figure(summary: pd.DataFrame, dataset: str, dataset_sections: list[Section], colours: dict[str, tuple],
                   path: Path) -> None:
    scored = summary[(summary["dataset"] == dataset) & (summary["status"] == "completed")].dropna(subset=["value"])
    scored = scored.assign(run=scored["method"] + " / " + scored["variant"])
    metrics = [m for s in dataset_sections for m in s.metrics if m in set(scored["metric"])]
    if not metrics:                              # every run of the dataset failed: say so
        fig, axis = plt.subplots(figsize=(5, 1.5))
        axis.axis("off")
        axis.text(0.5, 0.5, f"{dataset}: no completed runs (see Failed runs)", ha="center", va="center")
        _save(fig, path)
        return
    runs = sorted(set(scored["run"]), reverse=True)          # top to bottom in alphabetical order
    marked = {f"{r.method} / {r.variant}" for s in dataset_sections for r in s.rows if r.caveat}
    stats = scored.groupby(["metric", "run"])["value"].agg(["mean", "std"])
    sns.set_theme(style="whitegrid", font_scale=0.8)
    fig, axes = _grid(len(metrics), 0.3 * len(runs) + 0.8, label_inches=1.8, sharey=True)
    for axis, metric in zip(axes, metrics):
        _bars(axis, metric, runs, stats, colours, marked)
        for row in (r for section in dataset_sections for r in section.published if metric in r.cells):
            _published(axis, f"{row.method} / {row.variant}", row.cells[metric].mean, row.seeds, runs)
        axis.set_title(f"{metric} {better(metric)}")
        axis.set_ylim(-0.6, len(runs) - 0.4)
        values = scored.loc[scored["metric"] == metric, "value"]
        if values.between(0, 1).all():           # scores share [0, 1]; distances keep their own scale
            axis.set_xlim(0, 1.05)
    fig.suptitle(f"{dataset}: mean ± sd over seeds;  ◆ published (same method and spec);  dashed: quoted baselines")
    fig.tight_layout()
    _save(fig, path)


def _bars(axis, metric: str, runs: list[str], stats: pd.DataFrame, colours: dict[str, tuple],
          marked: set[str]) -> None:
    axis.set_yticks(range(len(runs)), [f"{run}\n({UNDER_TRAINED})" if run in marked else run for run in runs])
    for y, run in enumerate(runs):
        if (metric, run) in stats.index:
            mean, std = stats.loc[(metric, run)]
            axis.barh(y, mean, color=colours[run], xerr=0 if pd.isna(std) else std, capsize=3, height=0.7)


def _published(axis, label: str, value: float, seeds: str, runs: list[str]) -> None:
    if label in runs:
        axis.scatter([value], [runs.index(label)], marker="D", color="black", zorder=5)
    else:
        axis.axvline(value, color="black", linestyle="--", linewidth=0.8)
        axis.text(value, 1.0, f" {label} ({seeds})", transform=axis.get_xaxis_transform(), fontsize=7,
                  rotation=90, ha="right", va="top")


def epochs(log: pd.DataFrame) -> pd.Series:
    """The log's epochs in one sequence: a stage that counts its epochs from 1 again (VDAE's
    SpectralNet, then its VAE) goes on from where the stage before it ended."""
    epoch = log["epoch"]
    if "stage" not in log:
        return epoch
    restarts = log["stage"].ne(log["stage"].shift()) & epoch.diff().le(0)
    return epoch + epoch.shift().where(restarts, 0).cumsum()


def _stages(axis, log: pd.DataFrame) -> None:
    """Where a method of two or more stages (pre-training, then EM, ...) starts each: a dotted line, its name."""
    if "stage" not in log or log["stage"].nunique() < 2:
        return
    x = epochs(log)
    for start in log.index[log["stage"].ne(log["stage"].shift())]:
        axis.axvline(x[start], color="grey", linestyle=":", linewidth=0.8)
        axis.text(x[start], 1.0, f" {log['stage'][start]}", transform=axis.get_xaxis_transform(), fontsize=7,
                  color="grey", ha="left", va="top")


def curve_columns(logs: list[pd.DataFrame]) -> list[str]:
    """The columns to draw: the health signals first, then any other numeric column; a column
    with one value in every row of every log (a constant learning rate) shows nothing."""
    numeric = dict.fromkeys(c for log in logs for c in log.select_dtypes("number").columns if c not in BOOKKEEPING)
    changing = [c for c in numeric if pd.concat([_numbers(log, c) for log in logs if c in log]).nunique() > 1]
    return ([c for c in HEALTH if c in changing] + [c for c in changing if c not in HEALTH])[:MAX_CURVES]


def _numbers(log: pd.DataFrame, column: str) -> pd.Series:
    """A log column as numbers: a column that is numeric in one run's log may hold text in
    another's (EncDiff's `components`: empty without DyGA, a list of counts with it)."""
    return pd.to_numeric(log[column], errors="coerce")


def training_curves(logs: dict[tuple[str, int], pd.DataFrame], dataset: str, method: str,
                    colours: dict[str, tuple], path: Path) -> bool:
    """The method's train_log.csv columns against the epoch, a line per (variant, seed); False
    (and no figure) when the logs have nothing numeric that changes."""
    columns = curve_columns(list(logs.values()))
    if not columns:
        return False
    sns.set_theme(style="whitegrid", font_scale=0.8)
    fig, axes = _grid(len(columns), 2.6, label_inches=0.4, sharey=False)     # every signal on its own scale
    for (variant, seed), log in sorted(logs.items()):
        x = epochs(log)
        for axis, column in zip(axes, columns):
            if column in log and _numbers(log, column).notna().any():
                axis.plot(x, _numbers(log, column), color=colours[f"{method} / {variant}"],
                          linestyle=SEED_STYLES[seed % len(SEED_STYLES)], marker="." if len(log) < 20 else None,
                          linewidth=1.2, label=f"{variant}, seed {seed}")
    for axis, column in zip(axes, columns):
        axis.set_title(column)
        axis.set_xlabel("epoch")
        axis.set_xlim(0.5, max(epochs(log).max() for log in logs.values()) + 0.5)   # whole epochs, even for one
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        _stages(axis, next(iter(logs.values())))
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{dataset} / {method}: training curves")
    fig.tight_layout()
    _save(fig, path)
    return True



def learning_curve(table: pd.DataFrame, claim, dataset: str, suite: str, verdict: str, path: Path) -> None:
    """A claim's comparison against training images (bench/curves.py's table): a line per side
    that trains, a dashed line per side that does not (or a stated value), a dotted line at
    the suite's own budget."""
    sns.set_theme(style="whitegrid", font_scale=0.8)
    fig, axis = plt.subplots(figsize=(6.4, 3.8))
    palette = dict(zip(table["side"].unique(), sns.color_palette("colorblind", table["side"].nunique())))
    for side, rows in table.groupby("side", sort=False):
        trained = rows.dropna(subset=["factor"])
        if len(trained):
            axis.plot(trained["training_images"], trained["value"], marker="o", color=palette[side], label=side)
            for images, value, factor in trained[["training_images", "value", "factor"]].itertuples(index=False):
                axis.annotate(f"{factor:g}×", (images, value), textcoords="offset points", xytext=(4, 4), fontsize=7,
                              color=palette[side])
        else:
            axis.axhline(rows["value"].iloc[0], color=palette[side], linestyle="--", label=f"{side} (no training)")
    own = table[table["factor"] == 1.0]
    for number, images in enumerate(sorted(set(own["training_images"]))):
        # labelled in the legend, not beside the line: a label there covers the other side's 1× marker
        axis.axvline(images, color="grey", linestyle=":", linewidth=0.9,
                     label=f"{suite} budget (1×)" if number == 0 else None)
    axis.set_xscale("log", base=2)
    axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:,.0f}k"))
    axis.set_xlabel(f"training images (one seed; n× the {suite} suite's budget)")
    axis.set_ylabel(f"{claim.metric} {better(claim.metric)}")
    axis.legend(fontsize=7)
    drawn = ", ".join(f"{f:g}×" for f in sorted(table["factor"].dropna().unique()))
    axis.set_title(f"{claim.id} on {dataset}\n{suite} verdict: {verdict}; points at {drawn} its budget", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
