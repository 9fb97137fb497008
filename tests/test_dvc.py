"""dvc.yaml is generated from the suite config: it must be current, and DVC must accept it."""
import os
import subprocess
import sys
from pathlib import Path

from bench.config import REPO, expand, load_config
from bench.dvc import render


def test_committed_dvc_yaml_is_generated_from_the_current_config():
    committed = (REPO / "dvc.yaml").read_text()
    assert committed == render(load_config()), "dvc.yaml is stale: run `python -m bench dvc`"


def test_dvc_lists_a_train_and_evaluate_stage_per_run():
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run([str(dvc), "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"}, check=True, timeout=120)
    stages = set(result.stdout.split())
    runs = expand(load_config()["suite"])
    for run in runs:
        key = f"{run.dataset}-{run.method}-{run.variant}-seed{run.seed_index}"
        assert {f"train@{key}", f"evaluate@{key}"} <= stages
    assert {f"prepare@{d}" for d in {r.dataset for r in runs}} | {"aggregate", "report"} <= stages
