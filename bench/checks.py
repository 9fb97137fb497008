"""`python -m bench check`: the suite's results against its golden numbers and the papers.

    evaluation/golden/<suite>.csv    committed means, stds and tolerances (bench/golden.py)
    reports/<suite>/verdicts.csv     one row per golden comparison and per published entry

A regression (a golden mean dropped beyond its tolerance, or a golden result went missing)
makes the check fail; a published number we do not reproduce is a finding, reported in
the verdicts and the leaderboard, not a failure of the code."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.golden import golden_path
from common.files import write_text
from evaluation import published
from evaluation.verdicts import REGRESSION, Verdict, golden_verdicts, published_verdicts
from reports.tables import summarise


def run_checks(summary: pd.DataFrame, suite: str, reports_dir: Path, machines: str = "") -> tuple[Path, list[str]]:
    """`machines`: how the runs' kernels compare with the golden runs' (bench.golden.compare_machines)."""
    verdicts: list[Verdict] = []
    if golden_path(suite).exists():
        verdicts += golden_verdicts(pd.read_csv(golden_path(suite)), summarise(summary), machines)
    entries, _ = published.load()
    verdicts += published_verdicts(entries, summary)
    path = reports_dir / suite / "verdicts.csv"
    columns = list(Verdict.__dataclass_fields__)
    write_text(path, pd.DataFrame([v.row() for v in verdicts], columns=columns).to_csv(index=False, float_format="%.6g"))
    regressions = [f"{v.dataset}/{v.method}/{v.variant} {v.metric}: golden {v.reference:.4f}, now "
                   f"{'missing' if v.ours is None else f'{v.ours:.4f}'} ({v.reason})"
                   for v in verdicts if v.verdict == REGRESSION]
    return path, regressions
