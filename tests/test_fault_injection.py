"""A training run killed with SIGKILL in the middle resumes from its checkpoint and ends with
exactly the numbers of an uninterrupted run of the same seed."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from bench.config import REPO

RUN = ["--suite", "quick", "--dataset", "digits", "--method", "gmvae", "--variant", "quick", "--seed", "0"]


def bench(*args, data_dir, results_dir, **popen):
    command = [sys.executable, "-m", "bench", *args, *RUN, "--data-dir", str(data_dir), "--results-dir",
               str(results_dir), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}     # the same arithmetic in every process
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, **popen)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=True)


def test_sigkill_then_rerun_resumes_to_identical_results(tmp_path, prepared_data):
    run_path = "quick/digits/gmvae/quick/seed0"
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    bench("run", data_dir=prepared_data, results_dir=whole)
    bench("evaluate", data_dir=prepared_data, results_dir=whole)

    process = bench("run", data_dir=prepared_data, results_dir=killed, stderr=subprocess.DEVNULL)
    checkpoint = killed / run_path / "checkpoint.json"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert json.loads((killed / run_path / "run.json").read_text())["status"] == "running"
    assert not (killed / run_path / "outputs.npz").exists()

    resumed = bench("run", data_dir=prepared_data, results_dir=killed)
    assert "resuming from checkpoint" in resumed.stderr
    assert json.loads((killed / run_path / "run.json").read_text())["resumed"] is True
    bench("evaluate", data_dir=prepared_data, results_dir=killed)

    metrics = [json.loads((root / run_path / "metrics.json").read_text())["metrics"] for root in (whole, killed)]
    assert metrics[0] == metrics[1]
    with np.load(whole / run_path / "outputs.npz") as a, np.load(killed / run_path / "outputs.npz") as b:
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
