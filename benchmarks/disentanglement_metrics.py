"""Wall time of each disentanglement metric at the paper defaults (unsupervised_study_v1).

A split of 10,000 examples with 6 factors (full factorial 4×5×5×4×5×5) and a 20-dimensional
code: the 6 factors spread over the code by a random linear map plus noise, as a partly
disentangled encoder would give. DCI fits its 6 boosted-tree classifiers on --n-jobs processes;
its values are the same for any --n-jobs. Prints one line per metric; asserts nothing.

    .venv/bin/python benchmarks/disentanglement_metrics.py [--n-jobs 1] [--dim 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasets.factors import FactorSpace  # noqa: E402
from evaluation import disentanglement  # noqa: E402

SIZES = (4, 5, 5, 4, 5, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=1, help="DCI's joblib processes (-1: all cores)")
    parser.add_argument("--dim", type=int, default=20, help="code dimension")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    factors = np.stack(np.unravel_index(np.arange(np.prod(SIZES)), SIZES), axis=1)
    standardised = (factors - factors.mean(axis=0)) / factors.std(axis=0)
    mixing = np.eye(len(SIZES), args.dim) + 0.3 * rng.normal(size=(len(SIZES), args.dim))
    codes = standardised @ mixing + 0.2 * rng.normal(size=(len(factors), args.dim))
    space = FactorSpace(factors, SIZES)

    print(f"{len(factors)} examples, {len(SIZES)} factors {SIZES}, {args.dim}-d code, DCI n_jobs={args.n_jobs}")
    total = 0.0
    for metric in disentanglement.METRICS:
        names = [name for name in disentanglement.NAMES if name == metric or name.startswith(f"{metric}_")]
        start = time.perf_counter()
        values = disentanglement.compute(codes, space, names, n_jobs=args.n_jobs)
        elapsed = time.perf_counter() - start
        total += elapsed
        shown = "  ".join(f"{name}={value:.4f}" for name, value in values.items())
        print(f"{metric:<11} {elapsed:7.2f} s   {shown}")
    print(f"{'all':<11} {total:7.2f} s")


if __name__ == "__main__":
    main()
