"""Render a suite's leaderboards and figures from its summary.csv.

    python -m bench report --suite quick   →   reports/quick/leaderboard.{md,csv,tex,html}
                                               reports/quick/figures/<dataset>.png
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.files import write_text
from evaluation import published
from reports import render as formats
from reports.figures import dataset_figure
from reports.tables import csv_table, failed_runs, not_transcribed_for, sections


def render(summary: pd.DataFrame, out_dir: Path, suite: str, description: str = "",
           published_dir: Path = published.PUBLISHED_DIR, samples: dict[str, Path] | None = None) -> list[Path]:
    """The leaderboard files and figures; `samples` (caption → PNG) are the runs' sample grids,
    shown in the HTML page."""
    entries, not_transcribed = published.load(published_dir)
    parts = sections(summary, entries)
    pending = not_transcribed_for(summary, not_transcribed)
    failed = failed_runs(summary)
    figures = []
    for dataset in sorted(set(summary["dataset"])):              # one figure per dataset, even if all failed
        figures.append(out_dir / "figures" / f"{dataset}.png")
        dataset_figure(summary, dataset, [s for s in parts if s.dataset == dataset], figures[-1])
    outputs = {
        "leaderboard.md": formats.markdown(parts, suite, description, pending, failed),
        "leaderboard.csv": csv_table(summary),
        "leaderboard.tex": formats.latex(parts, suite, failed),
        "leaderboard.html": formats.page(parts, suite, description, {f.stem: f for f in figures} | (samples or {}),
                                         pending, failed),
    }
    for name, text in outputs.items():
        write_text(out_dir / name, text)
    return [out_dir / name for name in outputs] + figures
