"""How the golden rule fares across machines, measured on the golden runs themselves.

    python benchmarks/golden_cross_check.py --suite quick [--commit HEAD]

For each kernel path of the suite's golden runs (results/golden/<commit>/<kernel>/, made by
`python -m bench golden`), golden numbers are pooled from the OTHER paths only and the held-out
path's own suite runs (the suite's seeds) are checked against them: the false alarms a user on
that machine would see if the golden runs had not covered it. Then the width of every band of
the full golden file, per network. Prints; asserts nothing.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from bench.config import REPO, load_suite  # noqa: E402
from bench.golden import SPREAD, golden_path, pool, suite_runs_only  # noqa: E402
from evaluation.verdicts import OK, golden_verdicts  # noqa: E402
from reports.tables import summarise  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--commit", default="HEAD", help="the commit whose golden runs to use (default: HEAD)")
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.commit], capture_output=True, text=True,
                            check=True).stdout.strip()
    kernels = load_suite(args.suite)["golden"]["kernels"]
    directory = Path(args.results_dir) / "golden" / commit[:12]
    summaries = {k: pd.read_csv(directory / k / args.suite / "summary.csv") for k in kernels}
    if len(summaries) < 2:
        sys.exit(f"the {args.suite} suite's golden runs have one kernel path: nothing to hold out")
    for held_out in kernels:
        golden, _ = pool({k: s for k, s in summaries.items() if k != held_out}, args.suite)
        verdicts = golden_verdicts(golden, summarise(suite_runs_only(summaries[held_out], args.suite)))
        flagged = [v for v in verdicts if v.verdict != OK]
        print(f"{held_out} runs against golden numbers from {', '.join(k for k in kernels if k != held_out)} only: "
              f"{len(flagged)} of {len(verdicts)} values flagged")
        for v in flagged:
            print(f"  {v.verdict}: {v.dataset}/{v.method}/{v.variant} {v.metric}: {v.reason}")
    table = pd.read_csv(golden_path(args.suite))
    bands = table[(table["rule"] == SPREAD) & table["mean"].notna()]
    print(f"\nbands of {golden_path(args.suite).relative_to(REPO)} (half-widths, networks):")
    print(bands[["dataset", "method", "variant", "metric", "mean", "std", "runs", "check_seeds", "tolerance"]]
          .to_string(index=False, float_format=lambda x: f"{x:.4g}"))


if __name__ == "__main__":
    main()
