"""What the method tests share: a slice of a prepared dataset, one fit in its own run
directory, the training log it wrote, and a run killed right after a given checkpoint."""
from __future__ import annotations

import csv

import numpy as np

import methods
from datasets.base import Split
from methods.base import RunContext, RunData


def data_slice(dataset, split: Split, n: int, seed: int | None = None) -> RunData:
    """The first n examples (or n random ones, in order, with a seed) as fit and score split."""
    pick = slice(n) if seed is None else np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False))
    part = Split("all", np.asarray(split.x[pick]),
                 None if split.labels is None else np.asarray(split.labels[pick]),
                 None if split.factors is None else np.asarray(split.factors[pick]))
    return RunData(dataset, part, part)


def fit(method: str, data: RunData, config: dict, run_dir, seed: int = 0, context=RunContext) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    return methods.get(method).fit(data, config, context(run_dir, seed, "cpu"))


def log_rows(run_dir) -> list[dict]:
    """train_log.csv without its wall-clock column."""
    with open(run_dir / "train_log.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


class Killed(RuntimeError):
    """The stand-in for a kill, pre-emption or crash."""


def killed_after(epoch: int, key: str = "epoch"):
    """A RunContext that dies right after writing the checkpoint whose state[key] is `epoch`."""
    class KilledAfter(RunContext):
        def save_checkpoint(self, state):
            super().save_checkpoint(state)
            if state[key] == epoch:
                raise Killed
    return KilledAfter
