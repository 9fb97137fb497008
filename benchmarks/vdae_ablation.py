"""The VDAE's ablation: Gromov–Wasserstein of each quick-* variant (one correction from the
authors' code switched off, or all of them) beside quick and the plain VAE.

    python -m bench data prepare circle            # and torus, sphere, swiss_roll
    OMP_NUM_THREADS=1 python benchmarks/vdae_ablation.py --datasets circle torus --seeds 0 1 2

Each run is the quick suite's: the dataset's prepared points (fit and score split: all), the
variant's config, GW as the evaluate step scores it (evaluation.metrics `gw`, 500 points of
each set). Every variant of a seed index trains under the seed of the quick variant's run, so
that a switch is compared on the same draws where its code path agrees. Prints one row per
dataset and variant (each seed's GW and their mean); asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import datasets  # noqa: E402
import methods  # noqa: E402
from bench.config import derive_seed, load_methods, method_config  # noqa: E402
from evaluation import Context, evaluate  # noqa: E402
from methods.base import RunContext, RunData  # noqa: E402

ABLATION = [name for name in load_methods()["methods"]["vdae"]["variants"]
            if name.startswith("quick-") and name != "quick-digits"]


def gw_of(method: str, variant: str, data: RunData, seed: int) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        outputs = methods.get(method).fit(data, method_config(method, variant), RunContext(Path(run_dir), seed, "cpu"))
    return evaluate(Context(outputs, data.score, data.dataset), names=["gw"])["gw"].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["circle", "torus", "sphere", "swiss_roll"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seed indices")
    parser.add_argument("--variants", nargs="+", default=["quick", *ABLATION], help="vdae variants")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()

    runs = [("vae", "quick"), *(("vdae", variant) for variant in args.variants)]
    for name in args.datasets:
        dataset = datasets.get(name)
        split = dataset.load(args.data_dir, "all")
        data = RunData(dataset, split, split)
        for method, variant in runs:
            values = [gw_of(method, variant, data, derive_seed(name, method, "quick", index)) for index in args.seeds]
            print(f"{name:10s} {method:4s} {variant:26s} gw " + " ".join(f"{value:.4f}" for value in values)
                  + f"  mean {np.mean(values):.4f}", flush=True)


if __name__ == "__main__":
    main()
