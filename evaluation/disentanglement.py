"""Disentanglement metrics of a method's codes against ground-truth factors (docs/metrics.md).

Each metric follows disentanglement_lib (Locatello et al., ICML 2019) with the defaults of its
`unsupervised_study_v1` metric configs, which are the keyword defaults below:

    beta_vae    β-VAE score (Higgins et al. 2017): logistic regression on mean |z1 − z2| of
                pairs of batches sharing one factor; eval accuracy
    factor_vae  FactorVAE score (Kim & Mnih 2018): majority vote of argmin normalised variance
                over batches with one factor fixed; codes with global std < 0.05 are dropped
    mig         mutual information gap (Chen et al. 2018) on 20-bin histogram codes
    dci         disentanglement, completeness, informativeness (Eastwood & Williams 2018)
                from gradient-boosted trees
    sap         SAP score (Kumar et al. 2018), classification form: linear SVM per code and factor
    modularity  modularity score (Ridgeway & Mozer 2018) from the MIG mutual-information matrix

The representation is `codes` (N×d: the method's deterministic code of example i of a split)
with the split's `FactorSpace`. Metrics sample factor values with `space.sample_factors`, map
them to examples with `space.indices_of` and read `codes[indices]`, which is what
disentanglement_lib's representation function on sampled observations computes. Randomness
comes from one NumPy generator per metric seeded with `seed` (0, as in the study), so a metric's
value does not depend on which others are computed; the draws differ from disentanglement_lib's
RandomState stream, so values match it in distribution, not digit for digit. Where
disentanglement_lib leaves a scikit-learn model unseeded (the boosted trees, the SVM) we seed it
with `seed` so that a run repeated gives the same number.
"""
from __future__ import annotations

import importlib.metadata
import inspect
from typing import Callable, NamedTuple

import numpy as np

from datasets.factors import FactorSpace

# SciPy, scikit-learn and joblib are imported where they are used: a suite with metric_params
# is validated with `spec` at every Snakemake start, which should not pay a second for them.

NAMES = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness",
         "dci_informativeness", "sap", "modularity")
CHUNK_ROWS = 1024   # batches whose codes are gathered at once: bounds memory to CHUNK_ROWS×batch×d


class DCI(NamedTuple):
    disentanglement: float
    completeness: float
    informativeness: float


# ---------------------------------------------------------------- the metrics

def beta_vae_score(codes: np.ndarray, space: FactorSpace, *, batch: int = 64, n_train: int = 10000,
                   n_eval: int = 5000, seed: int = 0) -> float:
    """β-VAE score: accuracy on `n_eval` held-out points of a logistic regression (scikit-learn
    defaults, as disentanglement_lib's `beta_vae_sklearn`) that predicts which factor two batches
    of `batch` examples share from the mean absolute difference of their codes. Those defaults
    were liblinear one-vs-rest when the study ran and are lbfgs multinomial now: hence the
    scikit-learn version in the spec."""
    codes, rng = _checked(codes, space), np.random.default_rng(seed)
    x_train, y_train = _beta_vae_points(codes, space, n_train, batch, rng)
    from sklearn.linear_model import LogisticRegression
    model = LogisticRegression(random_state=seed).fit(x_train, y_train)
    x_eval, y_eval = _beta_vae_points(codes, space, n_eval, batch, rng)
    return float(model.score(x_eval, y_eval))


def factor_vae_score(codes: np.ndarray, space: FactorSpace, *, batch: int = 64, n_train: int = 10000,
                     n_eval: int = 5000, n_var: int = 10000, prune: float = 0.05, seed: int = 0) -> float:
    """FactorVAE score: each vote fixes one factor over a batch and names the code of least
    variance relative to its global variance (estimated on `n_var` points, ddof=1); codes whose
    global std is below `prune` (collapsed to the prior) take no part: the study sets
    `prune_dims.threshold = 0.05`; the library's own default, 0, keeps every code. Each code is mapped to the
    factor with most training votes; the score is the share of eval votes that this map gets
    right. With no active code the score is 0, as in disentanglement_lib."""
    codes, rng = _checked(codes, space), np.random.default_rng(seed)
    global_var = _sample(codes, space, n_var, rng)[0].var(axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune
    if not active.any():
        return 0.0
    codes, global_var = codes[:, active], global_var[active]
    train_votes = _factor_vae_votes(codes, space, n_train, batch, global_var, rng)
    eval_votes = _factor_vae_votes(codes, space, n_eval, batch, global_var, rng)
    return majority_vote_accuracy(train_votes, eval_votes)


def mig(codes: np.ndarray, space: FactorSpace, *, bins: int = 20, n: int = 10000, seed: int = 0) -> float:
    """Mutual information gap on `n` sampled points: see `mig_of`."""
    codes, rng = _checked(codes, space), np.random.default_rng(seed)
    return mig_of(*_sample(codes, space, n, rng), bins=bins)


def dci(codes: np.ndarray, space: FactorSpace, *, n_train: int = 10000, n_test: int = 5000, seed: int = 0,
        n_jobs: int = 1) -> DCI:
    """DCI from one gradient-boosted tree classifier per factor (scikit-learn defaults: 100 trees,
    depth 3, learning rate 0.1) trained on `n_train` points; informativeness is their mean
    accuracy on `n_test` other points. The classifiers are independent and seeded, so fitting
    them on `n_jobs` processes (joblib) gives the same numbers as one."""
    codes, rng = _checked(codes, space), np.random.default_rng(seed)
    importance, accuracy = gbt_importance(*_sample(codes, space, n_train, rng), *_sample(codes, space, n_test, rng),
                                          seed=seed, n_jobs=n_jobs)
    return DCI(dci_disentanglement(importance), dci_completeness(importance), float(np.mean(accuracy)))


def sap_score(codes: np.ndarray, space: FactorSpace, *, n_train: int = 10000, n_test: int = 5000,
              seed: int = 0) -> float:
    """SAP score with discrete factors (`continuous_factors=False` in the study): for each code
    and factor the test accuracy of a linear SVM (C = 0.01, balanced classes) on that code alone;
    per factor the best minus the second best code; mean over factors."""
    codes, rng = _checked(codes, space), np.random.default_rng(seed)
    x_train, y_train = _sample(codes, space, n_train, rng)
    x_test, y_test = _sample(codes, space, n_test, rng)
    accuracy = np.array([[_single_code_accuracy(x_train[:, [i]], y_train[:, j], x_test[:, [i]], y_test[:, j], seed)
                          for j in range(space.num_factors)] for i in range(codes.shape[1])])
    return float(np.mean(_top_two_gap(accuracy)))


def modularity(codes: np.ndarray, space: FactorSpace, *, bins: int = 20, n: int = 10000, seed: int = 0) -> float:
    """Modularity on `n` sampled points with 20-bin histogram codes: see `modularity_of`. (The
    study's explicitness score, computed by the same function there, is not part of this one.)"""
    codes, rng = _checked(codes, space), np.random.default_rng(seed)
    return modularity_of(mutual_information(*_sample(codes, space, n, rng), bins=bins))


# ---------------------------------------------------------------- one entry point, and the specs

METRICS: dict[str, Callable] = {"beta_vae": beta_vae_score, "factor_vae": factor_vae_score, "mig": mig,
                                "dci": dci, "sap": sap_score, "modularity": modularity}
USES_SKLEARN = ("beta_vae", "mig", "dci", "sap", "modularity")   # whose values move with its version


def compute(codes: np.ndarray, space: FactorSpace, names=NAMES, *, seed: int = 0, n_jobs: int = 1,
            params: dict[str, dict] | None = None) -> dict[str, float]:
    """The metrics of `names` (default: all), keyed by name. `params` overrides a metric's
    protocol, e.g. {"mig": {"n": 1000}}; the same overrides must go to `spec`. DCI is computed
    once for its three names; `n_jobs` is its number of processes."""
    values = {}
    for metric in dict.fromkeys(_metric_of(name) for name in names):
        extra = {"n_jobs": n_jobs} if metric == "dci" else {}
        value = METRICS[metric](codes, space, **_protocol(metric, (params or {}).get(metric, {})), seed=seed, **extra)
        values.update({f"dci_{k}": v for k, v in value._asdict().items()} if metric == "dci" else {metric: value})
    return {name: values[name] for name in names}


def spec(name: str, **params) -> str:
    """The protocol of a metric's number, e.g. `mig[bins=20,n=10000,sklearn=1.9.1]`: the sample
    sizes, bins and thresholds it was computed with (defaults unless overridden by `params`),
    and the scikit-learn version where its defaults enter the value."""
    metric = _metric_of(name)
    protocol = [f"{key}={value}" for key, value in _protocol(metric, params).items()]
    if metric in USES_SKLEARN:
        protocol.append(f"sklearn={importlib.metadata.version('scikit-learn')}")
    return f"{name}[{','.join(protocol)}]"


def _metric_of(name: str) -> str:
    metric = "dci" if name.startswith("dci_") else name
    if metric not in METRICS or (metric == "dci" and name not in NAMES):
        raise ValueError(f"unknown disentanglement metric {name!r}; known: {', '.join(NAMES)}")
    return metric


def _protocol(metric: str, overrides: dict) -> dict:
    """The metric's protocol parameters (its keyword defaults, seed and n_jobs aside) with `overrides`."""
    defaults = {name: p.default for name, p in inspect.signature(METRICS[metric]).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("seed", "n_jobs")}
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"{metric} has no parameter {', '.join(sorted(unknown))}; its protocol is {sorted(defaults)}")
    return {**defaults, **overrides}


# ---------------------------------------------------------------- the computations on sampled points

def histogram_discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    """Each code column binned on `bins` equal-width bins between its own min and max
    (disentanglement_lib's `_histogram_discretize`: np.digitize on np.histogram's left edges)."""
    return np.stack([np.digitize(column, np.histogram(column, bins)[1][:-1]) for column in codes.T], axis=1)


def mutual_information(codes: np.ndarray, factors: np.ndarray, bins: int) -> np.ndarray:
    """d×F matrix of mutual information in nats between each histogram-binned code and each
    factor (disentanglement_lib's `discrete_mutual_info`)."""
    from sklearn.metrics import mutual_info_score
    return np.array([[mutual_info_score(factor, code) for factor in factors.T]
                     for code in histogram_discretize(codes, bins).T])


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy in nats of each factor's empirical distribution (its mutual information with itself)."""
    from sklearn.metrics import mutual_info_score
    return np.array([mutual_info_score(factor, factor) for factor in factors.T])


def mig_of(codes: np.ndarray, factors: np.ndarray, bins: int) -> float:
    """For each factor, the gap between the two codes most informative about it, divided by the
    factor's entropy; mean over factors."""
    mi = mutual_information(codes, factors, bins)
    return float(np.mean(_top_two_gap(mi) / factor_entropy(factors)))


def modularity_of(mi: np.ndarray) -> float:
    """From a d×F mutual-information matrix: per code, 1 − the squared MI it has with factors
    other than its best one, relative to (F − 1) × the best squared MI; a code with no
    information scores 0; mean over codes."""
    squared = np.square(mi)
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = (squared.sum(axis=1) - top) / (top * (mi.shape[1] - 1))
    return float(np.mean(np.where(top > 0, 1 - deviation, 0.0)))


def gbt_importance(x_train, y_train, x_test, y_test, *, seed: int = 0, n_jobs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The codes × factors importance matrix of one boosted-tree classifier per factor, and each
    classifier's test accuracy. The trees read float32 (scikit-learn's tree dtype): converted
    once here, not in every fit and predict, and half the bytes go to the worker processes; no
    value changes. A factor's fit costs about its number of classes (one tree per class and
    stage), so the largest go to the processes first: with 2 jobs and factor sizes 3, 6, 10, 8, 8
    the longer process does 19 of the 35 class units instead of 21 in factor order (measured on
    a 10-d mixed code: 46 of the 88 s of tree fitting instead of 53)."""
    x_train, x_test = (np.ascontiguousarray(x, dtype=np.float32) for x in (x_train, x_test))
    order = sorted(range(y_train.shape[1]), key=lambda j: -len(np.unique(y_train[:, j])))
    from joblib import Parallel, delayed
    fits = Parallel(n_jobs=n_jobs, batch_size=1)(
        delayed(_boosted_trees)(x_train, y_train[:, j], x_test, y_test[:, j], seed) for j in order)
    fits = dict(zip(order, fits))
    return (np.stack([fits[j][0] for j in range(len(order))], axis=1),
            np.array([fits[j][1] for j in range(len(order))]))


def dci_disentanglement(importance: np.ndarray) -> float:
    """Per code, 1 − entropy of its importance over factors (base F), weighted by the code's share
    of the total importance. `importance` is codes × factors."""
    from scipy.stats import entropy
    per_code = 1 - entropy(importance.T + 1e-11, base=importance.shape[1])
    total = importance.sum()
    weights = importance.sum(axis=1) / total if total > 0 else np.full(len(importance), 1 / len(importance))
    return float(np.sum(per_code * weights))


def dci_completeness(importance: np.ndarray) -> float:
    """Per factor, 1 − entropy of its importance over codes (base d), weighted by the factor's
    share: the disentanglement of the transposed matrix."""
    return dci_disentanglement(importance.T)


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> float:
    """Votes are factors × codes counts; each code predicts its most voted factor in training."""
    predicted = train_votes.argmax(axis=0)
    return float(eval_votes[predicted, np.arange(eval_votes.shape[1])].sum() / eval_votes.sum())


# ---------------------------------------------------------------- sampling

def _checked(codes, space: FactorSpace) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) != len(space.factors):
        raise ValueError(f"codes of shape {codes.shape} do not give one code vector per example of the factor "
                         f"space ({len(space.factors)} examples): pass the N×d codes of the same split")
    if codes.shape[1] < 2:
        raise ValueError("the disentanglement metrics compare codes with each other: "
                         "a code of at least 2 dimensions is needed")
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or infinite values: the method's outputs are broken")
    return codes


def _sample(codes, space: FactorSpace, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """`n` codes of examples with independently drawn factor values, and those values."""
    factors = space.sample_factors(n, rng)
    return codes[space.indices_of(factors, rng)], factors


def _fixed_factor_batches(space: FactorSpace, n: int, batch: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """For each of `n` points, a factor k drawn uniformly and a batch of factor values (n×batch×F)."""
    fixed = rng.integers(space.num_factors, size=n)
    return fixed, space.sample_factors(n * batch, rng).reshape(n, batch, space.num_factors)


def _lookup(space: FactorSpace, factors: np.ndarray, rng) -> np.ndarray:
    """Example indices, n×batch, of n×batch×F factor values."""
    return space.indices_of(factors.reshape(-1, factors.shape[-1]), rng).reshape(factors.shape[:2])


def _per_batch(reduce, *indices: np.ndarray) -> np.ndarray:
    """`reduce` applied to the n×batch index arrays CHUNK_ROWS batches at a time, concatenated."""
    return np.concatenate([reduce(*(a[start:start + CHUNK_ROWS] for a in indices))
                           for start in range(0, len(indices[0]), CHUNK_ROWS)])


def _beta_vae_points(codes, space, n, batch, rng) -> tuple[np.ndarray, np.ndarray]:
    """Features (mean |z1 − z2| over a pair of batches) and labels (the factor the pair shares)."""
    fixed, first = _fixed_factor_batches(space, n, batch, rng)
    second = space.sample_factors(n * batch, rng).reshape(first.shape)
    rows = np.arange(n)
    second[rows, :, fixed] = first[rows, :, fixed]
    features = _per_batch(lambda a, b: np.abs(codes[a] - codes[b]).mean(axis=1),
                          _lookup(space, first, rng), _lookup(space, second, rng))
    return features, fixed


def _factor_vae_votes(codes, space, n, batch, global_var, rng) -> np.ndarray:
    """factors × codes vote counts: a batch with factor k fixed votes (k, argmin of local/global variance)."""
    fixed, factors = _fixed_factor_batches(space, n, batch, rng)
    rows = np.arange(n)
    factors[rows, :, fixed] = factors[rows, 0, fixed][:, None]
    local_var = _per_batch(lambda a: codes[a].var(axis=1, ddof=1), _lookup(space, factors, rng))
    votes = np.zeros((space.num_factors, codes.shape[1]), dtype=np.int64)
    np.add.at(votes, (fixed, np.argmin(local_var / global_var, axis=1)), 1)
    return votes


# ---------------------------------------------------------------- the classifiers

def _boosted_trees(x_train, y_train, x_test, y_test, seed) -> tuple[np.ndarray, float]:
    import sklearn
    from sklearn.ensemble import GradientBoostingClassifier
    # The fit validates its parameters and checks the input anew for each of its 100 × classes
    # trees: a few per cent of its time, and the codes were checked once in `_checked`.
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        model = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
        return np.abs(model.feature_importances_), float(np.mean(model.predict(x_test) == y_test))


def _single_code_accuracy(x_train, y_train, x_test, y_test, seed) -> float:
    from sklearn.svm import LinearSVC
    model = LinearSVC(C=0.01, class_weight="balanced", random_state=seed).fit(x_train, y_train)
    return float(np.mean(model.predict(x_test) == y_test))


def _top_two_gap(scores: np.ndarray) -> np.ndarray:
    """Per column of a codes × factors score matrix, the best score minus the second best."""
    top = np.sort(scores, axis=0)
    return top[-1] - top[-2]
