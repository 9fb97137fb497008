"""Clustering metrics, each with the protocol that makes it comparable (docs/metrics.md).

    ACC[hungarian]          best one-to-one cluster→class map (DEC/VaDE convention); with
                            more clusters than classes the unmatched clusters count as errors
    ACC[aae-most-confident] each cluster takes the label of its most confident example
                            (adversarial-autoencoder protocol, followed by GMVAE); many-to-one.
                            Ranked by log-odds from log-probabilities: saturated float32
                            posteriors tie at exactly 1.0, log-odds do not
    NMI[arithmetic|geometric], ARI   scikit-learn, with the average stated explicitly
"""
from __future__ import annotations

import numpy as np

# SciPy and scikit-learn are imported where they are used: every Snakemake start validates
# the config, which loads this module, and should not pay a second for them.


def contingency(labels_true: np.ndarray, labels_pred: np.ndarray) -> np.ndarray:
    """counts[c, k] = number of examples in cluster c with class k (ids need not be contiguous)."""
    _, true_ids = np.unique(labels_true, return_inverse=True)
    _, pred_ids = np.unique(labels_pred, return_inverse=True)
    counts = np.zeros((pred_ids.max() + 1, true_ids.max() + 1), dtype=np.int64)
    np.add.at(counts, (pred_ids, true_ids), 1)
    return counts


def hungarian_accuracy(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    _check_same_length(labels_true, labels_pred)
    from scipy.optimize import linear_sum_assignment
    counts = contingency(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels_true))


def most_confident_accuracy(labels_true: np.ndarray, log_probs: np.ndarray) -> float:
    """ACC[aae-most-confident]: cluster k is labelled with the class of its most confident
    example, the one of the highest log-odds log p_ik - log sum_{j != k} p_ij (an order the
    same as p_ik's, but not flattened where p_ik rounds to 1). `log_probs`: log posteriors
    (N x K); from probabilities, np.log(probs) (ties at 1.0 then stay ties)."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    _check_same_length(labels_true, log_probs)
    assigned = log_probs.argmax(axis=1)
    cluster_label = np.asarray(labels_true)[log_odds(log_probs).argmax(axis=0)]
    return float(np.mean(cluster_label[assigned] == labels_true))


def log_odds(log_probs: np.ndarray) -> np.ndarray:
    """log p_ik - log sum_{j != k} p_ij for every example i and cluster k (N x K)."""
    from scipy.special import logsumexp
    k = log_probs.shape[1]
    others = np.where(np.eye(k, dtype=bool), -np.inf, log_probs[:, None, :])     # (N, K, K): row k without k
    with np.errstate(divide="ignore"):
        return log_probs - logsumexp(others, axis=-1)


def nmi(labels_true: np.ndarray, labels_pred: np.ndarray, average: str) -> float:
    from sklearn.metrics import normalized_mutual_info_score
    return float(normalized_mutual_info_score(labels_true, labels_pred, average_method=average))


def ari(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score
    return float(adjusted_rand_score(labels_true, labels_pred))


def _check_same_length(labels_true, predicted) -> None:
    if len(labels_true) != len(predicted):
        raise ValueError(f"{len(labels_true)} true labels but {len(predicted)} predictions: "
                         "outputs must describe every example of the scored split")
