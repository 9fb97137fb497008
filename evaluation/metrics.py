"""The metric registry: every metric by name, with the track it belongs to, what it needs,
and the protocol that goes into its spec.

A spec is `family[protocol,...,split=<scored split>]`, e.g. `acc[hungarian,split=test]`:
two numbers are only ever compared when their specs are equal."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from evaluation import clustering


@dataclass(frozen=True)
class MetricValue:
    value: float | None
    spec: str
    unavailable: str | None = None   # why there is no value (never a made-up number)

    def to_json(self) -> dict:
        return {"value": self.value, "spec": self.spec, **({"unavailable": self.unavailable} if self.unavailable else {})}


@dataclass(frozen=True)
class Metric:
    track: str
    family: str
    protocol: tuple[str, ...]
    output: str                                  # the method output it scores
    target: str                                  # the dataset array it needs
    compute: Callable[[np.ndarray, np.ndarray], float]

    def spec(self, split: str) -> str:
        return f"{self.family}[{','.join(self.protocol + (f'split={split}',))}]"


METRICS = {
    "acc_hungarian": Metric("clustering", "acc", ("hungarian",), "assignments", "labels",
                            lambda y, pred: clustering.hungarian_accuracy(y, pred)),
    "acc_aae": Metric("clustering", "acc", ("aae-most-confident",), "probs", "labels",
                      lambda y, probs: clustering.most_confident_accuracy(y, probs)),
    "nmi_arithmetic": Metric("clustering", "nmi", ("average=arithmetic",), "assignments", "labels",
                             lambda y, pred: clustering.nmi(y, pred, "arithmetic")),
    "nmi_geometric": Metric("clustering", "nmi", ("average=geometric",), "assignments", "labels",
                            lambda y, pred: clustering.nmi(y, pred, "geometric")),
    "ari": Metric("clustering", "ari", (), "assignments", "labels",
                  lambda y, pred: clustering.ari(y, pred)),
}

WHY_MISSING = {
    "probs": "the method gives no cluster posteriors (needs soft assignments)",
}


def evaluate(outputs: dict[str, np.ndarray], split, names: list[str] | None = None) -> dict[str, MetricValue]:
    """Every metric of `names` (default: all) that applies to this dataset split.

    A metric whose dataset array is missing (no labels) does not apply and is left out; one
    whose method output is missing is recorded as unavailable, with the reason."""
    results = {}
    for name in names or METRICS:
        metric = METRICS[name]
        target = getattr(split, metric.target)
        if target is None:
            continue
        spec = metric.spec(split.name)
        if metric.output not in outputs:
            reason = WHY_MISSING.get(metric.output, f"the method gives no '{metric.output}' output")
            results[name] = MetricValue(None, spec, reason)
            continue
        results[name] = MetricValue(metric.compute(np.asarray(target), outputs[metric.output]), spec)
    return results
