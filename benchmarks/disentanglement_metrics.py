"""Wall time of each disentanglement metric at the study defaults (unsupervised_study_v1).

The setup of issue #20 (which gives 43 s for disentanglement_lib's six metrics on it): the full
dSprites-like factor grid 3×6×10×8×8 (11,520 examples, every combination once) and three codes:

    identity  the 5 factors themselves, as floats
    mixed     a --dim code (default 10, the study's latent size): the standardised factors
              through a fixed random linear map plus noise, as a partly disentangled encoder gives
    random    a 6-d standard normal code, independent of the factors

DCI fits its per-factor boosted trees on --n-jobs processes; its values are the same for any
--n-jobs. Prints each metric's time and values per code, then the time per metric over the
three codes and the total; asserts nothing. Timings are wall times: on a shared machine run it
a few times and take the minimum.

    .venv/bin/python benchmarks/disentanglement_metrics.py --n-jobs 1
    .venv/bin/python benchmarks/disentanglement_metrics.py --n-jobs 2
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

SIZES = (3, 6, 10, 8, 8)


def codes_of(factors: np.ndarray, dim: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    standardised = (factors - factors.mean(axis=0)) / factors.std(axis=0)
    mixing = np.eye(len(SIZES), dim) + 0.3 * rng.normal(size=(len(SIZES), dim))
    return {"identity": factors.astype(float),
            "mixed": standardised @ mixing + 0.2 * rng.normal(size=(len(factors), dim)),
            "random": rng.normal(size=(len(factors), 6))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=1, help="DCI's joblib processes (-1: all cores)")
    parser.add_argument("--dim", type=int, default=10, help="dimension of the mixed code")
    args = parser.parse_args()

    factors = np.stack(np.unravel_index(np.arange(np.prod(SIZES)), SIZES), axis=1)
    space = FactorSpace(factors, SIZES)
    print(f"{len(factors)} examples, factors {'×'.join(map(str, SIZES))}, n_jobs={args.n_jobs}")
    per_metric = dict.fromkeys(disentanglement.METRICS, 0.0)
    for code_name, codes in codes_of(factors, args.dim).items():
        print(f"{code_name} ({codes.shape[1]}-d code)")
        for metric in disentanglement.METRICS:
            names = [name for name in disentanglement.NAMES if name == metric or name.startswith(f"{metric}_")]
            start = time.perf_counter()
            values = disentanglement.compute(codes, space, names, n_jobs=args.n_jobs)
            elapsed = time.perf_counter() - start
            per_metric[metric] += elapsed
            shown = "  ".join(f"{name}={value:.4f}" for name, value in values.items())
            print(f"  {metric:<11} {elapsed:7.2f} s   {shown}")
    print("three codes")
    for metric, elapsed in per_metric.items():
        print(f"  {metric:<11} {elapsed:7.2f} s")
    print(f"  {'all':<11} {sum(per_metric.values()):7.2f} s")


if __name__ == "__main__":
    main()
