"""The few lines a person reads when the pipeline finishes: where the report is, what it
showed, and what to run next.

The report step keeps what it has just judged in reports/<suite>/summary.json (`facts`), and
Snakemake's onsuccess prints `text` of that file: nothing is judged twice, so the lines
cannot disagree with the leaderboard."""
from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import pandas as pd

from evaluation.claims import HOLDS, NOT_RUN, REVERSED, UNDECIDED
from evaluation.verdicts import ABOVE, BELOW, NOT_COMPARABLE, REPRODUCED, WITHIN_NOISE
from reports.tables import UNDER_TRAINED, Claims, Section

CLAIM_ORDER = (HOLDS, REVERSED, UNDECIDED, NOT_COMPARABLE, NOT_RUN)
PUBLISHED_ORDER = (REPRODUCED, WITHIN_NOISE, BELOW, ABOVE, NOT_COMPARABLE)
SHOWN_FAILURES = 5          # the leaderboard lists them all
WIDTH = 120
LARGER_SUITES = {
    "laptop": "the papers' claims at laptop scale on real MNIST digits (under an hour on 2 cores)",
    "fashion": "Fashion-MNIST whole: k-means and GMM against ASPC-DA's numbers, NMM's and GMVAE's claims",
}


def facts(suite: str, summary: pd.DataFrame, judged: Claims, sections: list[Section],
          marked: dict[tuple[str, str, str], str], failed: list[str], run_dirs: dict) -> dict:
    """What summary.json keeps: the verdicts as the leaderboard shows them (`sections`' published
    verdicts, `marked`: the under-trained groups, `failed`: tables.failed_runs' lines), and the
    training log of each failed run that has one (`run_dirs`: the leaderboard's)."""
    logs = {f"{dataset}/{method}/{variant}/seed{seed}": run_dir / "train.log"
            for (dataset, method, variant, seed), run_dir in run_dirs.items()}
    return {
        "suite": suite,
        "runs": len(summary.drop_duplicates(["dataset", "method", "variant", "seed"])),
        "claims": [{"id": v.claim.id, "dataset": v.dataset, "verdict": v.verdict} for v in judged.verdicts]
                  + [{"id": claim, "dataset": None, "verdict": NOT_RUN} for claim in judged.not_run],
        "published": [{"run": f"{v.dataset}/{v.method}/{v.variant}", "metric": v.metric, "verdict": v.verdict}
                      for s in sections for v in s.verdicts],
        "under_trained": ["/".join(group) for group in sorted(marked)],
        # a failed run's line starts with its label (tables.failed_runs), which has no colon
        "failed": [{"run": line, "log": _existing(logs.get(line.partition(":")[0]))} for line in failed],
    }


def text(suite_dir: Path, check: str = "") -> str:
    """The summary of reports/<suite>/summary.json; `check`: the command that checks the suite
    (default: `python -m bench check --suite <suite>`)."""
    facts = json.loads((Path(suite_dir) / "summary.json").read_text())
    suite, failed = facts["suite"], facts["failed"]
    lines = [f"The {suite} suite: {facts['runs']} runs, {facts['runs'] - len(failed)} completed, "
             f"{len(failed)} failed.",
             f"Report: {Path(suite_dir) / 'leaderboard.html'}  (open it in a browser)",
             f"        {Path(suite_dir) / 'leaderboard.md'}"]
    if facts["claims"]:
        lines.append(_counts("Claims", [c["verdict"] for c in facts["claims"]], CLAIM_ORDER))
        holding = [f"{c['id']} ({c['dataset']})" for c in facts["claims"] if c["verdict"] == HOLDS]
        lines += [_wrap("  holding: " + ", ".join(holding))] if holding else []
    if facts["published"]:
        lines.append(_counts("Published numbers", [p["verdict"] for p in facts["published"]], PUBLISHED_ORDER))
    if facts["under_trained"]:
        lines.append(_wrap(f"Marked \"{UNDER_TRAINED}\": " + ", ".join(facts["under_trained"])))
    if failed:
        # the words tests/test_pipeline.py looks for
        lines.append(f"WARNING: {len(failed)} run(s) failed; the leaderboard shows them as failed:")
        for run in failed[:SHOWN_FAILURES]:
            lines.append("  " + textwrap.shorten(run["run"], WIDTH - 2, placeholder=" ..."))
            lines += [f"    log: {run['log']}"] if run["log"] else []
        lines += [f"  and {len(failed) - SHOWN_FAILURES} more"] if len(failed) > SHOWN_FAILURES else []
    lines += ["Next:", f"  {check or f'python -m bench check --suite {suite}'}",
              "      compares with the golden and published numbers; exit status 1 on a regression"]
    lines += [f"  make {name:<8} {what}" for name, what in LARGER_SUITES.items() if name != suite]
    return "\n".join(lines)


def _existing(path: Path | None) -> str | None:
    return str(path) if path is not None and path.exists() else None


def tally(verdicts: list[str], order: tuple[str, ...]) -> list[tuple[str, int]]:
    """Each verdict with its count: the first of `order` always (0 HOLDS says something), the
    others where they occur."""
    counts = Counter(verdicts)
    shown = [v for v in order if counts[v] or v == order[0]] + [v for v in counts if v not in order]
    return [(v, counts[v]) for v in shown]


def _counts(what: str, verdicts: list[str], order: tuple[str, ...]) -> str:
    """"Claims (11): 0 HOLDS, 3 REVERSED, 8 UNDECIDED"."""
    return f"{what} ({len(verdicts)}): " + ", ".join(f"{n} {v}" for v, n in tally(verdicts, order))


def _wrap(line: str) -> str:
    return "\n".join(textwrap.wrap(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False))
