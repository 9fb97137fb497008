"""Render a suite's leaderboards and figures from its summary.csv (and, for the HTML page, its
runs' train_log.csv, samples.png and traversals.png).

    python -m bench report --suite quick   →   reports/quick/leaderboard.{md,csv,tex,html}
                                               reports/quick/summary.json (what the pipeline prints at its end)
                                               reports/quick/figures/<dataset>.png
                                               reports/quick/figures/training/<dataset>-<method>.png
"""
from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import pandas as pd

from common.files import write_json, write_text
from evaluation import claims, published
from reports import render as formats, summary as run_summary
from reports.page import page
from reports.figures import dataset_figure, run_colours, training_curves
from reports.tables import MethodRuns, claim_verdicts, csv_table, failed_runs, not_transcribed_for, provenance, sections

RunKey = tuple[str, str, str, int]               # dataset, method, variant, seed index


def render(summary: pd.DataFrame, out_dir: Path, suite: str, description: str = "",
           published_dir: Path = published.PUBLISHED_DIR, run_dirs: dict[RunKey, Path] | None = None,
           claims_dir: Path = claims.CLAIMS_DIR, checks: list[claims.Claim] = ()) -> list[Path]:
    """The leaderboard files and figures; `run_dirs` are the suite's run directories, whose
    training logs and images the HTML page shows beside the numbers; `checks` the suite's
    learning checks (claims.learning_checks)."""
    entries, not_transcribed = published.load(published_dir)
    judged = claim_verdicts(summary, claims.load(claims_dir, published_dir), suite, checks)
    marked = judged.marked
    parts = sections(summary, entries, marked)
    pending = not_transcribed_for(summary, not_transcribed)
    failed = failed_runs(summary)
    colours = run_colours(summary["method"] + " / " + summary["variant"])
    figures = {}
    for dataset in sorted(set(summary["dataset"])):              # one figure per dataset, even if all failed
        figures[dataset] = out_dir / "figures" / f"{dataset}.png"
        dataset_figure(summary, dataset, [s for s in parts if s.dataset == dataset], colours, figures[dataset])
    runs = method_runs(run_dirs or {}, colours, out_dir / "figures" / "training")
    facts = run_summary.facts(suite, summary, judged, parts, marked, failed, run_dirs or {})
    records = [json.loads(path.read_text()) for run_dir in (run_dirs or {}).values()
               if (path := run_dir / "run.json").exists()]
    outputs = {
        "leaderboard.md": formats.markdown(parts, suite, description, pending, failed, judged),
        "leaderboard.csv": csv_table(summary),
        "leaderboard.tex": formats.latex(parts, suite, failed),
        "leaderboard.html": page(parts, suite, description, figures, runs, facts,
                                 provenance(records, len(run_dirs or {}) - len(records)), pending, failed, judged),
    }
    for name, text in outputs.items():
        write_text(out_dir / name, text)
    write_json(out_dir / "summary.json", facts)
    curves = [r.curves for r in runs if r.curves is not None]
    return [out_dir / name for name in [*outputs, "summary.json"]] + list(figures.values()) + curves


def method_runs(run_dirs: dict[RunKey, Path], colours: dict[str, tuple], curves_dir: Path) -> list[MethodRuns]:
    """Per dataset and method: a figure of its runs' training curves, and their images."""
    result = []
    for (dataset, method), keys in groupby(sorted(run_dirs), key=lambda key: key[:2]):
        keys = list(keys)
        logs = {(variant, seed): log for (_, _, variant, seed) in keys
                if (log := _train_log(run_dirs[dataset, method, variant, seed])) is not None}
        curves = curves_dir / f"{dataset}-{method}.png"
        drawn = bool(logs) and training_curves(logs, dataset, method, colours, curves)
        images = [(f"{variant}, seed {seed}: {kind}", path) for (_, _, variant, seed) in keys
                  for kind in ("samples", "traversals")
                  if (path := run_dirs[dataset, method, variant, seed] / f"{kind}.png").exists()]
        if drawn or images:
            result.append(MethodRuns(dataset, method, curves if drawn else None, images))
    return result


def _train_log(run_dir: Path) -> pd.DataFrame | None:
    """The run's train_log.csv where it logs training over epochs (the baselines log one row per
    restart of their fit: no curve to draw)."""
    path = run_dir / "train_log.csv"
    if not path.exists() or path.stat().st_size == 0:
        return None
    log = pd.read_csv(path)
    return log if len(log) and "epoch" in log else None
