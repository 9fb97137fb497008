"""Collect every run of a suite into one long table: one row per run and metric."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ["suite", "dataset", "method", "variant", "seed", "metric", "spec", "value", "unavailable",
           "status", "config_hash"]


def collect(runs, results_dir: str | Path) -> pd.DataFrame:
    """Rows for `runs` (RunIds): their metrics, or one row saying the run failed or is missing."""
    rows = []
    for run in runs:
        run_dir = run.path(results_dir)
        identity = {"suite": run.suite, "dataset": run.dataset, "method": run.method, "variant": run.variant,
                    "seed": run.seed_index}
        metrics_path, record_path = run_dir / "metrics.json", run_dir / "run.json"
        if metrics_path.exists():
            result = json.loads(metrics_path.read_text())
            if result["status"] != "completed":
                rows.append({**identity, "status": result["status"], "unavailable": result.get("error"),
                             "config_hash": result["run"].get("config_hash")})
            for metric, entry in result["metrics"].items():
                rows.append({**identity, "metric": metric, "spec": entry["spec"], "value": entry["value"],
                             "unavailable": entry.get("unavailable"), "status": result["status"],
                             "config_hash": result["run"]["config_hash"]})
        else:
            record = json.loads(record_path.read_text()) if record_path.exists() else None
            rows.append({**identity, "status": record["status"] if record else "missing",
                         "unavailable": record.get("error") if record else None,
                         "config_hash": record["config_hash"] if record else None})
    return pd.DataFrame(rows, columns=COLUMNS)
