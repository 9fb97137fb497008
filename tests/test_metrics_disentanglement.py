"""Disentanglement metrics: sanity on ideal, random and mixed codes, hand-made examples, and
independent straightforward implementations on the same draws."""
import numpy as np
import pytest
import sklearn
from sklearn.ensemble import GradientBoostingClassifier

from datasets.factors import FactorSpace
from evaluation import disentanglement as dis

SIZES = (3, 4, 5, 6, 4)
SMALL = {"beta_vae": {"n_train": 1000, "n_eval": 500}, "factor_vae": {"n_train": 1000, "n_eval": 500, "n_var": 2000},
         "mig": {"n": 2000}, "dci": {"n_train": 500, "n_test": 250}, "sap": {"n_train": 1000, "n_test": 500},
         "modularity": {"n": 2000}}


def full_factorial(sizes) -> FactorSpace:
    """One example for every combination of factor values."""
    return FactorSpace(np.stack(np.unravel_index(np.arange(np.prod(sizes)), sizes), axis=1), sizes)


@pytest.fixture(scope="module")
def space():
    return full_factorial(SIZES)


@pytest.fixture(scope="module")
def representations(space):
    factors = space.factors.astype(float)
    mixed = factors.copy()   # factors 1 and 4 (both of size 4) rotated into codes 1 and 4
    mixed[:, 1], mixed[:, 4] = factors[:, 1] + factors[:, 4], factors[:, 1] - factors[:, 4]
    return {"factors": factors, "random": np.random.default_rng(1).normal(size=factors.shape), "mixed": mixed}


@pytest.fixture(scope="module")
def scores(space, representations):
    return {name: dis.compute(codes, space, params=SMALL) for name, codes in representations.items()}


def test_the_factors_themselves_score_near_one(scores):
    ideal = scores["factors"]
    for name in ("beta_vae", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness", "modularity"):
        assert ideal[name] >= 0.99, name
    assert ideal["mig"] >= 0.95
    # SAP's classification form cannot reach 1: a linear SVM on one code separates a many-valued
    # factor only in part, and the second-best code still scores chance accuracy.
    assert ideal["sap"] > 0.3


def test_a_random_representation_scores_near_chance(scores):
    random, chance = scores["random"], 1 / len(SIZES)
    assert abs(random["beta_vae"] - chance) < 0.1
    assert random["factor_vae"] < chance + 0.15   # the majority vote of 5 codes is a little above chance
    for name in ("mig", "sap"):
        assert random[name] < 0.05, name
    for name in ("dci_disentanglement", "dci_completeness"):
        assert random[name] < 0.1, name
    # Chance for modularity is well above 0: the estimated MI's bias grows with the factor's size,
    # so noise codes look "modular" towards the largest factor. Informativeness is above chance
    # too: random codes still identify their example, and train and test draw from the same 1,440.
    assert random["modularity"] < scores["factors"]["modularity"] - 0.3
    assert random["dci_informativeness"] < scores["factors"]["dci_informativeness"] - 0.3


def test_mixing_two_factors_into_codes_scores_lower(scores):
    for name in set(dis.NAMES) - {"dci_informativeness"}:   # the rotation loses no information
        assert scores["mixed"][name] < scores["factors"][name] - 0.05, name
        assert scores["mixed"][name] > scores["random"][name], name


def test_results_are_identical_across_calls(space, representations, scores):
    assert dis.compute(representations["mixed"], space, params=SMALL) == scores["mixed"]


def test_dci_in_parallel_gives_the_same_numbers(space, representations, scores):
    parallel = dis.dci(representations["mixed"], space, **SMALL["dci"], n_jobs=2)
    assert parallel == tuple(scores["mixed"][f"dci_{part}"] for part in dis.DCI._fields)


def test_compute_returns_the_names_asked_for(space, representations):
    small = {"dci": {"n_train": 100, "n_test": 50}, "mig": {"n": 500}}
    values = dis.compute(representations["mixed"], space, names=("dci_completeness", "mig"), params=small)
    assert list(values) == ["dci_completeness", "mig"]


# ---------------------------------------------------------------- independent implementations

def draws(space, n, rng):
    """The documented sampling: factor values, then an example with them, for each point."""
    factors = space.sample_factors(n, rng)
    return space.indices_of(factors, rng), factors


def plain_mutual_information(a, b):
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


def plain_mig(codes, factors, bins=20):
    low, high = codes.min(axis=0), codes.max(axis=0)
    binned = np.clip(np.floor((codes - low) / (high - low) * bins), 0, bins - 1).astype(int)
    gaps = []
    for j in range(factors.shape[1]):
        mi = sorted((plain_mutual_information(binned[:, i], factors[:, j]) for i in range(codes.shape[1])), reverse=True)
        gaps.append((mi[0] - mi[1]) / plain_mutual_information(factors[:, j], factors[:, j]))
    return float(np.mean(gaps))


def plain_weighted_specificity(importance):
    """DCI disentanglement written out: per row 1 − H(row / row sum) / log(columns), weighted by row sums."""
    total = importance.sum()
    score = 0.0
    for row in importance:
        if row.sum() == 0:
            continue
        p = row / row.sum()
        p = p[p > 0]
        score += (1 + np.sum(p * np.log(p)) / np.log(importance.shape[1])) * row.sum() / total
    return score


def test_mig_matches_a_plain_implementation_on_the_same_draws(space, representations):
    codes = representations["mixed"] + np.random.default_rng(2).normal(0, 0.3, size=representations["mixed"].shape)
    indices, factors = draws(space, 3000, np.random.default_rng(0))
    assert dis.mig(codes, space, n=3000) == pytest.approx(plain_mig(codes[indices], factors), abs=1e-12)


def test_mig_by_hand():
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 5)
    # code 0 is factor 0, code 1 factor 1: each factor has one code with all of its log 2 nats
    assert dis.mig_of(factors.astype(float), factors, bins=20) == pytest.approx(1.0)
    # both codes copy factor 0: no gap for it, and no information about factor 1
    assert dis.mig_of(factors[:, [0, 0]].astype(float), factors, bins=20) == pytest.approx(0.0)


@pytest.mark.parametrize("importance, disentanglement, completeness", [
    ([[1, 0], [0, 1]], 1.0, 1.0),
    ([[1, 0], [1, 0]], 1.0, 0.0),          # two codes share one factor: disentangled, not complete
    ([[1, 1], [0, 0]], 0.0, 1.0),          # one code for two factors: complete, not disentangled
    ([[0.75, 0.25], [0, 0]], 1 - (0.75 * np.log2(1 / 0.75) + 0.25 * np.log2(4)), 1.0),
])
def test_dci_scores_by_hand(importance, disentanglement, completeness):
    importance = np.array(importance, dtype=float)
    assert dis.dci_disentanglement(importance) == pytest.approx(disentanglement, abs=1e-9)
    assert dis.dci_completeness(importance) == pytest.approx(completeness, abs=1e-9)


def test_dci_matches_a_plain_implementation_on_the_same_draws(space, representations, scores):
    codes, rng = representations["mixed"], np.random.default_rng(0)
    (train, y_train), (test, y_test) = draws(space, 500, rng), draws(space, 250, rng)
    importance, accuracy = [], []
    for j in range(space.num_factors):
        model = GradientBoostingClassifier(random_state=0).fit(codes[train], y_train[:, j])
        importance.append(model.feature_importances_)
        accuracy.append(np.mean(model.predict(codes[test]) == y_test[:, j]))
    importance = np.array(importance).T
    ours = scores["mixed"]
    assert ours["dci_disentanglement"] == pytest.approx(plain_weighted_specificity(importance), abs=1e-9)
    assert ours["dci_completeness"] == pytest.approx(plain_weighted_specificity(importance.T), abs=1e-9)
    assert ours["dci_informativeness"] == pytest.approx(np.mean(accuracy), abs=1e-12)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_dci_importance_is_bit_identical_to_plain_fits_in_factor_order(space, representations, n_jobs):
    """The float32 conversion done once and the largest-factor-first dispatch change no bit: the
    same matrix and accuracies as fitting each factor in turn on the float64 codes. SIZES are
    unequal, so the dispatch order differs from the factor order and a mix-up would show."""
    codes = representations["mixed"] + np.random.default_rng(4).normal(0, 0.3, size=representations["mixed"].shape)
    rng = np.random.default_rng(0)
    (train, y_train), (test, y_test) = draws(space, 400, rng), draws(space, 200, rng)
    models = [GradientBoostingClassifier(random_state=0).fit(codes[train], y_train[:, j])
              for j in range(space.num_factors)]
    expected = np.stack([model.feature_importances_ for model in models], axis=1)
    expected_accuracy = [np.mean(model.predict(codes[test]) == y_test[:, j]) for j, model in enumerate(models)]
    importance, accuracy = dis.gbt_importance(codes[train], y_train, codes[test], y_test, n_jobs=n_jobs)
    assert np.array_equal(importance, expected)
    assert np.array_equal(accuracy, expected_accuracy)


def plain_factor_vae_votes(codes, space, n, batch, global_var, rng):
    """disentanglement_lib's loop, one vote at a time, on the same draws as ours."""
    fixed = rng.integers(space.num_factors, size=n)
    factors = space.sample_factors(n * batch, rng).reshape(n, batch, -1)
    for v in range(n):
        factors[v, :, fixed[v]] = factors[v, 0, fixed[v]]
    indices = space.indices_of(factors.reshape(n * batch, -1), rng).reshape(n, batch)
    votes = np.zeros((space.num_factors, codes.shape[1]), dtype=int)
    for v in range(n):
        local_var = np.var(codes[indices[v]], axis=0, ddof=1)
        votes[fixed[v], np.argmin(local_var / global_var)] += 1
    return votes


def test_factor_vae_matches_a_plain_implementation_on_the_same_draws(space, representations):
    codes = representations["mixed"] + np.random.default_rng(3).normal(0, 0.5, size=representations["mixed"].shape)
    rng = np.random.default_rng(0)
    indices, _ = draws(space, 2000, rng)
    global_var = np.var(codes[indices], axis=0, ddof=1)
    train = plain_factor_vae_votes(codes, space, 1000, 64, global_var, rng)
    evaluation = plain_factor_vae_votes(codes, space, 500, 64, global_var, rng)
    correct = sum(evaluation[np.argmax(train[:, i]), i] for i in range(codes.shape[1]))
    ours = dis.factor_vae_score(codes, space, **SMALL["factor_vae"])
    assert ours == pytest.approx(correct / evaluation.sum(), abs=1e-12)


def test_factor_vae_by_hand_drops_collapsed_codes():
    space = full_factorial((3, 4))
    factors = space.factors.astype(float)
    collapsed = np.zeros((len(factors), 1))
    small = {"n_train": 200, "n_eval": 100, "n_var": 500}
    # a code with no spread would take every vote (0/0 variance ratio); pruned, the others score 1
    assert dis.factor_vae_score(np.hstack([factors, collapsed]), space, **small) == 1.0
    assert dis.factor_vae_score(np.hstack([collapsed, 0.01 * factors]), space, **small) == 0.0


def test_modularity_by_hand():
    assert dis.modularity_of(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(1.0)
    assert dis.modularity_of(np.array([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx(0.0)
    # code 0: squared MIs 4 and 1, deviation 1/4; code 1: only factor 1, deviation 0
    assert dis.modularity_of(np.array([[2.0, 1.0], [0.0, 0.5]])) == pytest.approx(0.875)


# ---------------------------------------------------------------- specs and errors

def test_specs_record_the_protocol_and_the_sklearn_version():
    version = sklearn.__version__
    assert dis.spec("mig") == f"mig[bins=20,n=10000,sklearn={version}]"
    assert dis.spec("beta_vae") == f"beta_vae[batch=64,n_train=10000,n_eval=5000,sklearn={version}]"
    assert dis.spec("factor_vae") == "factor_vae[batch=64,n_train=10000,n_eval=5000,n_var=10000,prune=0.05]"
    assert dis.spec("dci_completeness", n_train=1000) == f"dci_completeness[n_train=1000,n_test=5000,sklearn={version}]"
    assert dis.spec("sap") == f"sap[n_train=10000,n_test=5000,sklearn={version}]"
    assert dis.spec("modularity") == f"modularity[bins=20,n=10000,sklearn={version}]"


def test_unknown_names_parameters_and_bad_codes_are_refused(space):
    with pytest.raises(ValueError, match="unknown disentanglement metric"):
        dis.spec("dci_explicitness")
    with pytest.raises(ValueError, match="no parameter bins"):
        dis.spec("sap", bins=10)
    with pytest.raises(ValueError, match="one code vector per example"):
        dis.mig(np.zeros((10, 3)), space)
