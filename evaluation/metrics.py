"""The metric registry: every metric by name, with its track, what it needs, and its spec.

A spec is the exact protocol that makes two numbers comparable, e.g.
`acc[hungarian,split=test]`, `mig[bins=20,n=10000,sklearn=1.9.1,split=all]`,
`fid[torch-fidelity=0.4.0,inception-v3-compat,n=10000,ref=mnist-test]`. Numbers of
different specs are never ranked against each other.

A metric applies to a run when the method serves its track and the dataset has what it
needs (labels, factors, images, points); it is then computed, or recorded as unavailable
with the reason (an output the method does not give, too few samples, no Inception
weights offline) — never as a made-up number. The heavy modules (torch, POT) are imported
only when a metric of theirs is computed, so that validating a config stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evaluation import clustering
from evaluation.unavailable import MetricUnavailable


@dataclass(frozen=True)
class MetricValue:
    value: float | None
    spec: str
    unavailable: str | None = None   # why there is no value

    def to_json(self) -> dict:
        return {"value": self.value, "spec": self.spec, **({"unavailable": self.unavailable} if self.unavailable else {})}


@dataclass
class Context:
    """What a metric may look at: the run's outputs and the scored split of its dataset."""
    outputs: dict[str, np.ndarray]
    split: Any                         # datasets.Split
    dataset: Any = None                # datasets.Dataset (factor space, classifier cache)
    data_dir: Path | None = None
    n_jobs: int = 1
    inception_weights: str = ""        # a path, or "" for the torch hub cache
    params: dict = field(default_factory=dict)   # protocol overrides per metric group, e.g. {"dci": {"n_train": 2000}}
    memo: dict = field(default_factory=dict)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a shared intermediate (DCI's classifiers, the Inception features) once."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @property
    def is_images(self) -> bool:
        return np.asarray(self.split.x[:1]).dtype == np.uint8


@dataclass(frozen=True)
class Metric:
    track: str
    family: str                              # the spec's name, e.g. "acc" for acc_hungarian
    needs: tuple[str, ...]                   # method outputs
    applies: Callable[[Context], bool]       # does the dataset have what the metric needs?
    spec: Callable[[Context], str]           # computable even when the outputs are missing
    compute: Callable[[Context], float]
    lower_is_better: bool = False            # distances (FID, GW, ...) and distortions


def _with_split(spec: str, split: str) -> str:
    return f"{spec[:-1]},split={split}]" if spec.endswith("]") else f"{spec}[split={split}]"


# Clustering --------------------------------------------------------------------------------

def _has_labels(c: Context) -> bool:
    return c.split.labels is not None


def _clustering(protocol: str, output: str, score: Callable, only_if_given: bool = False) -> Metric:
    """A score of `output` against the labels; with `only_if_given`, it applies only to the
    methods that give that output (a method-specific read-out), instead of being recorded
    as unavailable for all the others."""
    return Metric("clustering", protocol.split("[")[0], (output,),
                  lambda c: _has_labels(c) and (not only_if_given or output in c.outputs),
                  lambda c: _with_split(protocol, c.split.name),
                  lambda c: score(np.asarray(c.split.labels), c.outputs[output]))


def _most_confident_accuracy(c: Context) -> float:
    """From the method's log-posteriors where it gives them (exact ranking of saturated
    posteriors), else from the log of its probabilities."""
    with np.errstate(divide="ignore"):
        log_probs = c.outputs["log_probs"] if "log_probs" in c.outputs else np.log(c.outputs["probs"])
    return clustering.most_confident_accuracy(np.asarray(c.split.labels), log_probs)


# Disentanglement ---------------------------------------------------------------------------

def _disentanglement(name: str) -> Metric:
    group = "dci" if name.startswith("dci_") else name       # DCI's three numbers come from one computation

    def compute(c: Context) -> float:
        from evaluation import disentanglement
        names = [n for n in disentanglement.NAMES if n.startswith("dci_")] if group == "dci" else [name]
        space = c.once("space", lambda: c.dataset.factor_space(c.split))
        values = c.once(f"disentanglement:{group}", lambda: disentanglement.compute(
            c.outputs["embedding"], space, names=names, n_jobs=c.n_jobs, params=c.params))
        return values[name]

    def spec(c: Context) -> str:
        from evaluation import disentanglement
        return _with_split(disentanglement.spec(name, **c.params.get(group, {})), c.split.name)

    return Metric("disentanglement", name, ("embedding",), lambda c: c.split.factors is not None, spec, compute)


# Generation --------------------------------------------------------------------------------

CLASSIFIER_MIN_SAMPLES = 256     # twice the classifier's 128 features: below, their covariance is singular


def _fid_kid(name: str) -> Metric:
    def compute(c: Context) -> float:
        from evaluation import generation
        scores = c.once("fid_kid", lambda: generation.fid_kid(c.outputs["samples"], np.asarray(c.split.x),
                                                               weights=c.inception_weights or None))
        return scores[name]

    def spec(c: Context) -> str:
        from evaluation import generation
        return generation.fid_kid_spec(name, _n_samples(c), c.dataset.name, c.split.name)

    return Metric("generation", name, ("samples",), lambda c: c.is_images, spec, compute, lower_is_better=True)


def _n_samples(c: Context) -> int:
    return len(c.outputs.get("samples", ()))


def _classifier_fd_compute(c: Context) -> float:
    from evaluation import generation
    samples = c.outputs["samples"]
    if len(samples) < CLASSIFIER_MIN_SAMPLES:
        raise MetricUnavailable(f"only {len(samples)} samples: the classifier Fréchet distance needs at least "
                                f"{CLASSIFIER_MIN_SAMPLES}")
    labelled = c.dataset.load(c.data_dir, "all")
    model = generation.classifier(np.asarray(labelled.x), np.asarray(labelled.labels),
                                  Path(c.data_dir) / c.dataset.name / "feature_classifier.pt")
    return generation.classifier_fd(model, samples, np.asarray(c.split.x))


def _classifier_fd_spec(c: Context) -> str:
    from evaluation import generation
    return generation.classifier_fd_spec(c.dataset.name, _n_samples(c), c.dataset.name, c.split.name)


# Topology ----------------------------------------------------------------------------------

GW_MAX_POINTS = 2000             # GW's cost grows with n²; a random subset of this size is compared


def _gw_points(c: Context) -> int:
    return min(GW_MAX_POINTS, len(c.split.x), _n_samples(c))


def _gw_compute(c: Context) -> float:
    from evaluation import topology
    return topology.gromov_wasserstein(np.asarray(c.split.x), c.outputs["samples"], n=_gw_points(c))


def _gw_spec(c: Context) -> str:
    from evaluation import topology
    return _with_split(topology.gw_spec(_gw_points(c)), c.split.name)


BI_LIPSCHITZ_PAIRS = {"latent-mean": ("embedding", "decoded"),        # (mu(x), decoder(mu(x))) of the score split
                      "random-walk": ("walk_latent", "walk_decoded")}  # the paper's: the walk's last z and decodings


def _bi_lipschitz(statistic: str, pairs: str) -> Metric:
    """The constant of one protocol: `pairs` names the (latent, output) outputs it reads."""
    latent, output = BI_LIPSCHITZ_PAIRS[pairs]

    def compute(c: Context) -> float:
        from evaluation import topology
        if len(c.outputs[latent]) <= topology.BI_LIPSCHITZ_K:
            raise MetricUnavailable(f"only {len(c.outputs[latent])} points in '{latent}': the bi-Lipschitz "
                                    f"constant needs more than its k = {topology.BI_LIPSCHITZ_K} neighbours")
        constant = c.once(f"bi_lipschitz:{pairs}", lambda: topology.local_bi_lipschitz(c.outputs[latent],
                                                                                      c.outputs[output]))
        return getattr(constant, statistic)

    def spec(c: Context) -> str:
        from evaluation import topology
        return _with_split(topology.bi_lipschitz_spec(pairs=pairs), c.split.name)

    # the random walk's pairs are the VDAE's own: the metric applies where a method gives them
    return Metric("topology", "bi_lipschitz", (latent, output),
                  lambda c: not c.is_images and (pairs == "latent-mean" or latent in c.outputs), spec, compute,
                  lower_is_better=True)


METRICS = {
    "acc_hungarian": _clustering("acc[hungarian]", "assignments", clustering.hungarian_accuracy),
    "acc_aae": Metric("clustering", "acc", ("probs",), _has_labels,
                      lambda c: _with_split("acc[aae-most-confident]", c.split.name), _most_confident_accuracy),
    "nmi_arithmetic": _clustering("nmi[average=arithmetic]", "assignments",
                                  lambda y, pred: clustering.nmi(y, pred, "arithmetic")),
    "nmi_geometric": _clustering("nmi[average=geometric]", "assignments",
                                 lambda y, pred: clustering.nmi(y, pred, "geometric")),
    "ari": _clustering("ari", "assignments", clustering.ari),
    # ClusterDDPM's labels at z = mu, beside the paper's read-out at a sampled z
    "acc_hungarian_at_mean": _clustering("acc[hungarian,readout=latent-mean]", "assignments_at_mean",
                                         clustering.hungarian_accuracy, only_if_given=True),
    "nmi_arithmetic_at_mean": _clustering("nmi[average=arithmetic,readout=latent-mean]", "assignments_at_mean",
                                          lambda y, pred: clustering.nmi(y, pred, "arithmetic"), only_if_given=True),
    # ClusterDDPM's labels from the mixture fitted right after pre-training, where EM sets out from
    "acc_hungarian_after_pretraining": _clustering("acc[hungarian,readout=after-pretraining]",
                                                   "assignments_after_pretraining", clustering.hungarian_accuracy,
                                                   only_if_given=True),
    "nmi_arithmetic_after_pretraining": _clustering("nmi[average=arithmetic,readout=after-pretraining]",
                                                    "assignments_after_pretraining",
                                                    lambda y, pred: clustering.nmi(y, pred, "arithmetic"),
                                                    only_if_given=True),
    # GMVAE v1's p(z|x,w) at the posterior means, beside the paper's read-out from its q(z|y) head
    "acc_aae_mixture_posterior": _clustering("acc[aae-most-confident,readout=mixture-posterior]",
                                             "log_probs_mixture_posterior", clustering.most_confident_accuracy,
                                             only_if_given=True),
    "acc_hungarian_mixture_posterior": _clustering("acc[hungarian,readout=mixture-posterior]",
                                                   "log_probs_mixture_posterior",
                                                   lambda y, log_probs: clustering.hungarian_accuracy(y, log_probs.argmax(1)),
                                                   only_if_given=True),
    **{name: _disentanglement(name) for name in ("beta_vae", "factor_vae", "mig", "dci_disentanglement",
                                                 "dci_completeness", "dci_informativeness", "sap", "modularity")},
    "fid": _fid_kid("fid"),
    "kid": _fid_kid("kid"),
    "fd_classifier": Metric("generation", "fd", ("samples",), lambda c: c.is_images and _has_labels(c),
                            _classifier_fd_spec, _classifier_fd_compute, lower_is_better=True),
    "gw": Metric("topology", "gw", ("samples",), lambda c: not c.is_images, _gw_spec, _gw_compute,
                 lower_is_better=True),
    "bi_lipschitz_mean": _bi_lipschitz("mean", "latent-mean"),
    "bi_lipschitz_std": _bi_lipschitz("std", "latent-mean"),
    "bi_lipschitz_walk_mean": _bi_lipschitz("mean", "random-walk"),
    "bi_lipschitz_walk_std": _bi_lipschitz("std", "random-walk"),
}

WHY_MISSING = {
    "probs": "the method gives no cluster posteriors (needs soft assignments)",
}


def evaluate(context: Context, tracks=None, names: list[str] | None = None) -> dict[str, MetricValue]:
    """Every metric of `names` (default: all) of the method's `tracks` (default: all) that
    applies to this dataset split, each computed or recorded as unavailable with its reason."""
    results = {}
    for name in names or METRICS:
        metric = METRICS[name]
        if (tracks is not None and metric.track not in tracks) or not metric.applies(context):
            continue
        spec = metric.spec(context)
        missing = [output for output in metric.needs if output not in context.outputs]
        if missing:
            reason = WHY_MISSING.get(missing[0], f"the method gives no '{missing[0]}' output")
            results[name] = MetricValue(None, spec, reason)
            continue
        try:
            results[name] = MetricValue(float(metric.compute(context)), spec)
        except MetricUnavailable as reason:
            results[name] = MetricValue(None, spec, str(reason))
    return results
