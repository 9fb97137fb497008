"""ClusterDDPM's EM trajectory: per epoch, the E-step's largest cluster and its ACC.

    OMP_NUM_THREADS=1 python benchmarks/clusterddpm_trajectory.py --variant paper --set n_feat=16 pretrain_epochs=40

Trains one run of the method (a variant of config/methods.yaml, with `--set` overrides) on a
prepared offline dataset, keeps the labels of every epoch's E-step (the official per-epoch
read-out, `fit_predict` on that epoch's draws) and prints, per epoch, the log's loss terms,
the largest cluster's share and the Hungarian ACC of those labels, then k-means' ACC on the
same pixels. Prints; asserts nothing. Labels are only read here, never by the method.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

import datasets  # noqa: E402
import methods  # noqa: E402
from bench.config import method_config  # noqa: E402
from evaluation.clustering import hungarian_accuracy  # noqa: E402
from methods.base import RunContext, RunData  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    args = parser.parse_args()

    config = method_config("clusterddpm", args.variant)
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in config:
            raise SystemExit(f"unknown clusterddpm setting '{key}'; valid: {', '.join(sorted(config))}")
        config[key] = yaml.safe_load(value)
    dataset = datasets.get(args.dataset)
    dataset.prepare(args.data_dir)
    split = dataset.load(args.data_dir)
    labels = np.asarray(split.labels)
    print("config:", {key: config[key] for key in sorted(config)}, flush=True)

    epochs = {}

    class Recording(RunContext):
        def save_checkpoint(self, state):
            super().save_checkpoint(state)
            epochs[state["epoch"]] = state["extra"]["labels"].numpy()

    with tempfile.TemporaryDirectory() as run_dir:
        run = Recording(Path(run_dir), args.seed, "cpu")
        outputs = methods.get("clusterddpm").fit(RunData(dataset, split, split), config, run)
        rows = (Path(run_dir) / "train_log.csv").read_text().splitlines()
    header = rows[0].split(",")
    print(f"{'epoch':>5} {'stage':>8} {'mse':>9} {'kl':>9} {'spread':>7} {'noise':>6} {'changed':>7} "
          f"{'largest':>7} {'acc':>6} {'seconds':>8}")
    for line in rows[1:]:
        row = dict(zip(header, line.split(",")))
        epoch = int(row["epoch"])
        print(f"{epoch:>5} {row['stage']:>8} {float(row['mse']):>9.4f} {float(row['kl']):>9.3f} "
              f"{float(row['mean_spread']):>7.4f} {float(row['draw_noise']):>6.3f} {row['labels_changed']:>7} "
              f"{float(row['largest_cluster']):>7.3f} {hungarian_accuracy(labels, epochs[epoch]):>6.3f} "
              f"{float(row['seconds']):>8.1f}")
    print(f"read-out at the end: acc[hungarian] {hungarian_accuracy(labels, outputs['assignments']):.3f}, "
          f"at z = mu {hungarian_accuracy(labels, outputs['assignments_at_mean']):.3f}")
    from sklearn.cluster import KMeans
    pixels = np.asarray(split.x).reshape(len(labels), -1) / 255.0
    kmeans = KMeans(n_clusters=dataset.n_classes, n_init=10, random_state=0).fit(pixels).labels_
    print(f"k-means on the pixels: acc[hungarian] {hungarian_accuracy(labels, kmeans):.3f}")


if __name__ == "__main__":
    main()
