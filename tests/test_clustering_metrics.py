"""Clustering metrics against brute force, hand-made examples and direct formulas."""
import itertools

import numpy as np
import pytest

from datasets.base import Split
from evaluation import clustering, metrics


def brute_force_accuracy(y_true, y_pred):
    """Best one-to-one map of clusters to classes by trying every injective map."""
    clusters, classes = np.unique(y_pred), np.unique(y_true)
    best = 0
    targets = list(classes) + [None] * max(0, len(clusters) - len(classes))
    for perm in itertools.permutations(targets, len(clusters)):
        mapping = dict(zip(clusters, perm))
        best = max(best, sum(mapping[p] == t for p, t in zip(y_pred, y_true)))
    return best / len(y_true)


@pytest.mark.parametrize("trial", range(20))
def test_hungarian_accuracy_matches_brute_force(trial):
    rng = np.random.default_rng(trial)
    n_classes, n_clusters = rng.integers(2, 5), rng.integers(2, 6)
    y_true = rng.integers(n_classes, size=30)
    y_pred = np.where(rng.random(30) < 0.6, y_true, rng.integers(n_clusters, size=30))
    assert clustering.hungarian_accuracy(y_true, y_pred) == pytest.approx(brute_force_accuracy(y_true, y_pred))


def test_hungarian_accuracy_counts_unmatched_clusters_as_errors():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    y_pred = np.array([0, 0, 2, 1, 1, 3])   # four clusters for two classes: two must go unmatched
    assert clustering.hungarian_accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_hungarian_accuracy_ignores_label_names():
    y_true = np.array([5, 5, 7, 7, 9])
    assert clustering.hungarian_accuracy(y_true, np.array([2, 2, 0, 0, 1])) == 1.0


def test_most_confident_accuracy_hand_made():
    # Cluster 0's most confident example is example 1 (class 4): all of cluster 0 becomes class 4.
    # Cluster 1's most confident example is example 3 (class 8); cluster 2 is the most
    # confident cluster for example 4 only, whose class (4) is right.
    probs = np.array([[0.6, 0.3, 0.1],
                      [0.9, 0.05, 0.05],
                      [0.5, 0.4, 0.1],
                      [0.1, 0.8, 0.1],
                      [0.1, 0.1, 0.8]])
    y_true = np.array([4, 4, 8, 8, 4])
    # assigned clusters: 0, 0, 0, 1, 2 -> labels 4, 4, 4, 8, 4: example 2 (class 8) is wrong.
    assert clustering.most_confident_accuracy(y_true, np.log(probs)) == pytest.approx(4 / 5)


def test_most_confident_accuracy_is_many_to_one():
    # Two clusters whose most confident examples share a class both take that class,
    # which a one-to-one (Hungarian) map would forbid.
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y_true = np.array([1, 1, 0])
    assert clustering.most_confident_accuracy(y_true, np.log(probs)) == pytest.approx(2 / 3)
    assert clustering.hungarian_accuracy(y_true, probs.argmax(1)) == pytest.approx(2 / 3)
    assert clustering.most_confident_accuracy(np.array([1, 1, 1]), np.log(probs)) == 1.0
    assert clustering.hungarian_accuracy(np.array([1, 1, 1]), probs.argmax(1)) == pytest.approx(2 / 3)


def test_most_confident_accuracy_ranks_saturated_posteriors_by_log_probability():
    """Cluster 0's posteriors all round to exactly 1.0 in float32, and so do their log-softmax
    values to 0.0; its first example (class 1) is its least confident one, its most confident
    (class 0) the last. Log-odds keep the order: the accuracy equals the exact one (float64)."""
    margins = np.array([20.0, 25.0, 30.0, 35.0, 60.0])           # logit of cluster 0 over cluster 1
    logits = np.concatenate([np.stack([margins, np.zeros(5)], 1), [[0.0, 3.0], [0.0, 4.0]]])
    log_probs = logits - np.logaddexp(logits[:, :1], logits[:, 1:])
    y_true = np.array([1, 1, 0, 0, 0, 1, 1])
    logits32 = logits.astype(np.float32)
    log_probs32 = logits32 - np.logaddexp(logits32[:, :1], logits32[:, 1:])   # a log-softmax in float32
    probs32 = np.exp(log_probs32)
    assert (probs32[:5, 0] == 1.0).all() and (log_probs32[:5, 0] == 0.0).all()   # exact ties in float32
    exact = clustering.most_confident_accuracy(y_true, log_probs)
    first_tied = np.mean(y_true[probs32.argmax(0)][probs32.argmax(1)] == y_true)   # the first tied example wins
    assert exact == pytest.approx(5 / 7) and first_tied == pytest.approx(4 / 7)
    assert clustering.most_confident_accuracy(y_true, log_probs32) == exact
    context = metrics.Context({"probs": probs32, "log_probs": log_probs32}, Split("all", np.zeros((7, 1)), y_true))
    assert metrics.METRICS["acc_aae"].compute(context) == exact
    # from probabilities alone too: the small posteriors are still representable in float32
    without_logs = metrics.Context({"probs": probs32}, Split("all", np.zeros((7, 1)), y_true))
    assert metrics.METRICS["acc_aae"].compute(without_logs) == exact


def direct_nmi(y_true, y_pred, average):
    """Mutual information and entropies from the joint distribution, in nats."""
    counts = clustering.contingency(y_true, y_pred).astype(float)
    joint = counts / counts.sum()
    p_pred, p_true = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = np.sum(joint[nz] * np.log(joint[nz] / np.outer(p_pred, p_true)[nz]))
    h_pred, h_true = -np.sum(p_pred * np.log(p_pred)), -np.sum(p_true * np.log(p_true))
    norm = (h_pred + h_true) / 2 if average == "arithmetic" else np.sqrt(h_pred * h_true)
    return mi / norm


@pytest.mark.parametrize("average", ["arithmetic", "geometric"])
def test_nmi_both_averages_match_direct_formula(average):
    rng = np.random.default_rng(3)
    y_true = rng.integers(4, size=200)
    y_pred = np.where(rng.random(200) < 0.5, y_true, rng.integers(6, size=200))
    assert clustering.nmi(y_true, y_pred, average) == pytest.approx(direct_nmi(y_true, y_pred, average))


def test_nmi_averages_differ_when_entropies_differ():
    rng = np.random.default_rng(4)
    y_true = rng.integers(2, size=500)
    y_pred = rng.integers(10, size=500) + 10 * y_true
    assert clustering.nmi(y_true, y_pred, "geometric") > clustering.nmi(y_true, y_pred, "arithmetic") + 0.05


def test_ari_perfect_and_chance():
    rng = np.random.default_rng(5)
    y = rng.integers(5, size=2000)
    assert clustering.ari(y, (y + 1) % 5) == pytest.approx(1.0)
    assert abs(clustering.ari(y, rng.integers(5, size=2000))) < 0.02


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="every example of the scored split"):
        clustering.hungarian_accuracy(np.zeros(3), np.zeros(4))
