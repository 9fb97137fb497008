"""`python -m bench check`: the suite's results against its golden numbers and the papers.

    evaluation/golden/<suite>.csv    committed means, stds and tolerances (`python -m bench golden`)
    reports/<suite>/verdicts.csv     one row per golden comparison and per published entry

A regression (a golden mean dropped beyond its tolerance, or a golden result went missing)
makes the check fail; a published number we do not reproduce is a finding, reported in
the verdicts and the leaderboard, not a failure of the code."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.config import REPO
from common.files import write_text
from evaluation import published
from evaluation.verdicts import GOLDEN_COLUMNS, REGRESSION, Verdict, golden_tolerance, golden_verdicts, published_verdicts
from reports.tables import summarise

GOLDEN_DIR = REPO / "evaluation" / "golden"


def golden_path(suite: str) -> Path:
    return GOLDEN_DIR / f"{suite}.csv"


def write_golden(summary: pd.DataFrame, suite: str) -> Path:
    table = summarise(summary)
    table["tolerance"] = [golden_tolerance(std, seeds) for std, seeds in zip(table["std"], table["seeds"])]
    write_text(golden_path(suite), table[GOLDEN_COLUMNS].to_csv(index=False, float_format="%.6g"))
    return golden_path(suite)


def run_checks(summary: pd.DataFrame, suite: str, reports_dir: Path) -> tuple[Path, list[str]]:
    verdicts: list[Verdict] = []
    if golden_path(suite).exists():
        verdicts += golden_verdicts(pd.read_csv(golden_path(suite)), summarise(summary))
    entries, _ = published.load()
    verdicts += published_verdicts(entries, summary)
    path = reports_dir / suite / "verdicts.csv"
    columns = list(Verdict.__dataclass_fields__)
    write_text(path, pd.DataFrame([v.row() for v in verdicts], columns=columns).to_csv(index=False, float_format="%.6g"))
    regressions = [f"{v.dataset}/{v.method}/{v.variant} {v.metric}: golden {v.reference:.4f}, now "
                   f"{'missing' if v.ours is None else f'{v.ours:.4f}'} ({v.reason})"
                   for v in verdicts if v.verdict == REGRESSION]
    return path, regressions
