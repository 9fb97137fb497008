"""Shared fixtures: tests run from a temporary directory with their own data and results."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Torch on one thread, as in the pipeline's jobs: with the machine's other core busy, two
    threads wait on each other (many times slower), and the arithmetic stays the same."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory with data/, results/ and reports/ beneath it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def config(workdir):
    from bench.config import load_config
    return load_config({"data_dir": "data", "results_dir": "results", "reports_dir": "reports", "device": "cpu"})


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory):
    """The offline datasets, prepared once per test session."""
    import datasets
    data_dir = tmp_path_factory.mktemp("data")
    for name in ("digits", "blobs", "sprites"):
        datasets.get(name).prepare(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def local_smoke_run(tmp_path_factory):
    """The smoke suite through Snakemake on this machine, once per test session (per pytest-xdist
    worker: the tests that use it are one xdist_group)."""
    from smoke_suite import run_locally
    return run_locally(tmp_path_factory.mktemp("local-smoke"))
