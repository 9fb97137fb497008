"""`python -m bench check`: the suite's results against its golden numbers and the papers.

    evaluation/golden/<suite>.csv    committed means, stds and tolerances (bench/golden.py)
    evaluation/claims/*.yaml         the papers' claims (evaluation/claims.py)
    reports/<suite>/verdicts.csv     one row per golden comparison, per published entry, per claim
                                     of this suite, and per claim against its golden verdict

A regression (a golden mean dropped beyond its tolerance, a golden result went missing, or a
claim that holds in the golden numbers no longer holds) makes the check fail; a published
number we do not reproduce, or a claim that does not hold, is a finding, reported in the
verdicts and the leaderboard, not a failure of the code. A run group the golden file does not
have (a method added since it was made) cannot regress: the check names it as not checked,
and passes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.golden import golden_path
from common.files import write_text
from evaluation import claims, published
from evaluation.verdicts import REGRESSION, Verdict, golden_verdicts, published_verdicts
from reports.tables import summarise


def run_checks(summary: pd.DataFrame, suite: str, reports_dir: Path,
               machines: str = "") -> tuple[Path, list[str], list[str]]:
    """The verdicts file, the regressions and the run groups not checked against golden numbers;
    `machines`: how the runs' kernels compare with the golden runs' (bench.golden.compare_machines)."""
    verdicts: list[Verdict] = []
    registered = claims.load()
    now = claims.verdicts(registered, suite, claims.summary_lookup(summary))
    covered = set()
    if golden_path(suite).exists():
        golden = pd.read_csv(golden_path(suite))
        covered = set(zip(golden["dataset"], golden["method"], golden["variant"]))
        verdicts += golden_verdicts(golden, summarise(summary), machines)
        verdicts += claims.golden_changes(claims.verdicts(registered, suite, claims.golden_lookup(golden)), now)
    groups = sorted(set(zip(summary["dataset"], summary["method"], summary["variant"])))
    unchecked = [f"{'/'.join(group)}: no golden numbers: not checked; make them with python -m bench golden "
                 f"--suite {suite}" for group in groups if group not in covered]
    entries, _ = published.load()
    verdicts += published_verdicts(entries, summary)
    verdicts += [v.as_verdict() for v in now]
    path = reports_dir / suite / "verdicts.csv"
    columns = list(Verdict.__dataclass_fields__)
    write_text(path, pd.DataFrame([v.row() for v in verdicts], columns=columns).to_csv(index=False, float_format="%.6g"))
    return path, [_regression(v) for v in verdicts if v.verdict == REGRESSION], unchecked


def _regression(v: Verdict) -> str:
    if v.kind == "golden-claim":
        return f"claim {v.claim} on {v.dataset} ({v.metric}): {v.reason}"
    return (f"{v.dataset}/{v.method}/{v.variant} {v.metric}: golden {v.reference:.4f}, now "
            f"{'missing' if v.ours is None else f'{v.ours:.4f}'} ({v.reason})")
