"""Topology metrics: Gromov–Wasserstein on congruent and different shapes, the local
bi-Lipschitz constant of isometries and linear maps, and its two protocols through evaluate."""
import numpy as np
import pytest

from datasets.base import Split
from evaluation import Context, evaluate, topology


def rotation(rng, dim):
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q


@pytest.fixture
def cloud():
    """An anisotropic 3-D point cloud with no symmetry to confuse the matching."""
    return np.random.default_rng(0).normal(size=(150, 3)) * [3.0, 1.5, 0.5]


def test_gw_is_zero_for_a_moved_and_reordered_copy(cloud):
    rng = np.random.default_rng(1)
    copy = (cloud @ rotation(rng, 3).T + 5.0)[rng.permutation(len(cloud))]
    assert topology.gromov_wasserstein(cloud, copy) == pytest.approx(0, abs=1e-9)
    assert topology.gromov_wasserstein(cloud, 2.0 * copy) == pytest.approx(0, abs=1e-9)   # max-normalised


def test_gw_is_larger_for_a_different_shape(cloud):
    angle = np.random.default_rng(2).uniform(0, 2 * np.pi, len(cloud))
    circle = np.stack([np.cos(angle), np.sin(angle), np.zeros_like(angle)], axis=1)
    assert topology.gromov_wasserstein(cloud, circle) > 0.05


def test_gw_needs_equal_counts_or_a_subsample(cloud):
    with pytest.raises(ValueError, match="as many points"):
        topology.gromov_wasserstein(cloud, cloud[:100])
    assert topology.gromov_wasserstein(cloud, cloud[:100], n=50) >= 0
    assert topology.gw_spec(50) == "gw[max-normalised,square-loss,n=50]"


@pytest.fixture
def latent():
    return np.random.default_rng(3).uniform(size=(1500, 2))


def test_bi_lipschitz_of_an_isometry_is_one(latent):
    embedding = rotation(np.random.default_rng(4), 3)[:2]   # orthonormal rows: an isometric embedding in 3-D
    result = topology.local_bi_lipschitz(latent, latent @ embedding)
    assert result.mean == pytest.approx(1.0, abs=1e-9)
    assert result.std == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("singular_values", [(4.0, 1.0), (1.0, 0.25)])
def test_bi_lipschitz_of_a_linear_map_is_its_singular_value_bound(latent, singular_values):
    """Every ratio lies in [s_min, s_max], so each point's constant is at most max(s_max, 1/s_min)
    (here the ratio of the singular values, 4), reached along the extreme singular direction;
    with 100 neighbours in the plane some lie close to that direction."""
    rng = np.random.default_rng(5)
    linear = rotation(rng, 2) @ np.diag(singular_values) @ rotation(rng, 2)
    result = topology.local_bi_lipschitz(latent, latent @ linear.T)
    assert 4.0 * 0.99 < result.mean <= 4.0 + 1e-9


def test_bi_lipschitz_refuses_duplicates_and_too_few_points(latent):
    with pytest.raises(ValueError, match="duplicate latent points"):
        topology.local_bi_lipschitz(np.vstack([latent, latent[:1]]), np.vstack([latent, latent[:1]]), k=5)
    with pytest.raises(ValueError, match="more than k latent points"):
        topology.local_bi_lipschitz(latent[:50], latent[:50])
    assert topology.bi_lipschitz_spec(pairs="random-walk") == "bi_lipschitz[k=100,pairs=random-walk]"


def test_both_bi_lipschitz_protocols_flow_through_evaluate_with_their_own_specs(latent):
    """The paper's protocol (the random walk's last z and their decodings) and ours (mu(x) and
    decoder(mu(x))) are two metrics of two specs; the paper's applies where a method gives its pairs."""
    split = Split("all", x=np.zeros((len(latent), 2), np.float32))
    mean_pairs = {"embedding": latent, "decoded": 2 * latent}
    values = evaluate(Context({**mean_pairs, "walk_latent": latent, "walk_decoded": 3 * latent}, split),
                      tracks=["topology"])
    assert values["bi_lipschitz_mean"].value == pytest.approx(2.0)
    assert values["bi_lipschitz_walk_mean"].value == pytest.approx(3.0)
    assert values["bi_lipschitz_mean"].spec == "bi_lipschitz[k=100,pairs=latent-mean,split=all]"
    assert values["bi_lipschitz_walk_std"].spec == "bi_lipschitz[k=100,pairs=random-walk,split=all]"
    assert "bi_lipschitz_walk_mean" not in evaluate(Context(mean_pairs, split), tracks=["topology"])
    few = evaluate(Context({**mean_pairs, "walk_latent": latent[:100], "walk_decoded": latent[:100]}, split),
                   tracks=["topology"])
    assert "needs more than its k = 100 neighbours" in few["bi_lipschitz_walk_mean"].unavailable
