"""Dynamic Gaussian Anchoring (methods/nets/gaussian_anchoring.py): EM against the exact
statistics of separated clusters, the whole fit on tokens of a known mixture, splitting,
pruning (the official bookkeeping and ours), the anchoring step (lambda, the move, its gradient), the normalisation and its
subsample, determinism under a generator, and the checkpoint round trip."""
import io

import pytest
import torch

from methods.nets import gaussian_anchoring as ga
from methods.nets.gaussian_anchoring import AnchoringSettings, GaussianAnchors, Mixture


def blobs(centres: torch.Tensor, sizes: list[int], scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around each centre (float64) and the index of the centre of each point."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    points = centres[labels] + scale * torch.randn(len(labels), centres.shape[1], generator=g, dtype=torch.float64)
    return points, labels


def spherical(means: torch.Tensor, variance: float) -> Mixture:
    k, d = means.shape
    return Mixture(means.clone(), variance * torch.eye(d, dtype=torch.float64).repeat(k, 1, 1),
                   torch.full((k,), 1.0 / k, dtype=torch.float64))


# EM, splitting, pruning --------------------------------------------------------------------

def test_em_converges_to_the_statistics_of_separated_clusters():
    centres = torch.tensor([[0.0] * 5, [6.0] * 5, [0.0, 0.0, 0.0, 8.0, -8.0]], dtype=torch.float64)
    x, labels = blobs(centres, [300, 200, 100], 0.5)
    start = spherical(centres + 0.7, 1.0)                       # off-centre, wrong covariances
    fitted = ga.em(x, start, 30, 1e-6)
    for k in range(3):
        members = x[labels == k]
        torch.testing.assert_close(fitted.means[k], members.mean(0))
        torch.testing.assert_close(fitted.covariances[k], torch.cov(members.T, correction=0) + 1e-6 * torch.eye(5,
                                   dtype=torch.float64))
    torch.testing.assert_close(fitted.weights, torch.tensor([0.5, 1 / 3, 1 / 6], dtype=torch.float64))


def test_a_too_wide_component_is_replaced_by_a_two_component_fit_on_its_members():
    centres = torch.tensor([[-2.0, 0, 0, 0], [2.0, 0, 0, 0]], dtype=torch.float64)
    x, _ = blobs(centres, [150, 150], 0.05)
    one = ga.em(x, spherical(torch.zeros(1, 4, dtype=torch.float64), 1.0), 5, 1e-6)
    members, spread = ga.member_spread(x, ga.responsibilities(x, one))
    assert spread[0] > 1.9 and len(members[0]) == 300          # every point is a member; the spread is about 2
    settings = AnchoringSettings(split_probability=0.0, split_limit=1)
    g = torch.Generator().manual_seed(0)
    replay = torch.Generator().manual_seed(0)
    split = ga.split_components(x, one, g, settings)
    assert len(split) == 2
    torch.rand(1, generator=replay)                                              # the round's coin for the one component
    halves = ga.em(x, ga.initial_mixture(x, 2, replay), settings.em_iterations, settings.reg_covar)
    torch.testing.assert_close(split.means, halves.means)
    torch.testing.assert_close(split.covariances, halves.covariances)
    torch.testing.assert_close(split.weights, halves.weights)                    # halved, then renormalised
    wide = torch.linalg.eigvalsh(one.covariances).max()
    assert (torch.linalg.eigvalsh(split.covariances).max(-1).values < wide).all()


@pytest.mark.parametrize("bookkeeping", ["official", "rounds"])
def test_a_narrow_component_splits_only_at_random_and_never_beyond_the_cap(bookkeeping):
    x, _ = blobs(torch.zeros(1, 4, dtype=torch.float64), [200], 0.05)
    one = ga.em(x, spherical(torch.zeros(1, 4, dtype=torch.float64), 1.0), 5, 1e-6)
    assert ga.member_spread(x, ga.responsibilities(x, one))[1][0] < 0.5
    g = torch.Generator().manual_seed(0)
    never = AnchoringSettings(split_probability=0.0, split_bookkeeping=bookkeeping)
    assert len(ga.split_components(x, one, g, never)) == 1
    always = AnchoringSettings(split_probability=1.0, initial_components=1, split_bookkeeping=bookkeeping)
    # rounds: 1 -> 2 -> 4 -> 8 in three rounds; official: a split that leaves every component narrow
    # ends its round without counting, so rounds go on up to max_components
    assert len(ga.split_components(x, one, g, always)) == {"official": 32, "rounds": 8}[bookkeeping]
    capped = AnchoringSettings(split_probability=1.0, initial_components=1, max_components=5,
                               split_bookkeeping=bookkeeping)
    split = ga.split_components(x, one, g, capped)
    assert len(split) == 5
    torch.testing.assert_close(split.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_the_official_bookkeeping_counts_splits_so_wide_components_split_in_one_round():
    x, _ = blobs(torch.zeros(1, 4, dtype=torch.float64), [2000], 2.0)
    g = torch.Generator().manual_seed(0)
    eight = ga.em(x, ga.initial_mixture(x, 8, g), 30, 1e-6)
    assert (ga.member_spread(x, ga.responsibilities(x, eight))[1] > 0.5).all()  # every component is wide
    official = ga.split_components(x, eight, g, AnchoringSettings(split_probability=0.0))
    rounds = ga.split_components(x, eight, g, AnchoringSettings(split_probability=0.0, split_bookkeeping="rounds"))
    assert len(official) == 16                                  # 8 splits in the first round: past the limit of 3
    assert len(rounds) == 32                                    # 8 -> 16 -> 32: the limit counts rounds
    torch.testing.assert_close(official.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_pruning_removes_the_components_with_too_little_mass():
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]], dtype=torch.float64)
    x, _ = blobs(centres, [100, 100, 6], 0.3)
    mixture = spherical(centres, 0.1)
    mass = ga.responsibilities(x, mixture).sum(0)
    torch.testing.assert_close(mass, torch.tensor([100.0, 100.0, 6.0], dtype=torch.float64))
    pruned = ga.prune_components(x, mixture, 10.0)
    assert len(pruned) == 2
    torch.testing.assert_close(pruned.means, centres[:2])
    torch.testing.assert_close(pruned.weights, torch.full((2,), 0.5, dtype=torch.float64))
    assert len(ga.prune_components(x, mixture, 6.0)) == 3      # at the threshold it stays
    assert len(ga.prune_components(x, mixture, 1000.0)) == 1   # the heaviest always stays


# The whole fit -------------------------------------------------------------------------------

def test_fit_recovers_the_components_of_a_known_mixture():
    """Three separated clusters per unit. Random splits cut a cluster into several components,
    so recovery means: every component's tokens come from one cluster, and the components of a
    cluster carry its share of the weight and, pooled, its mean. Tokens are 8-d rather than the
    paper's 32 so that the sub-components have more members than dimensions at this size."""
    g = torch.Generator().manual_seed(3)
    true_means = 4 * torch.randn(2, 3, 8, generator=g, dtype=torch.float64)       # 2 units, 3 components
    sizes = [600, 525, 375]
    proportions = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)
    units = [blobs(true_means[u], sizes, 0.3, seed=u) for u in range(2)]
    tokens = torch.stack([points for points, _ in units], 1)
    anchors = GaussianAnchors.fit(tokens, torch.Generator().manual_seed(0))
    assigned = anchors.assign(tokens)
    for u, (points, labels) in enumerate(units):
        k = int(anchors.n_components[u])
        assert 3 <= k <= 32
        means = anchors.token_means()[u, :k]
        distance = torch.cdist(means, true_means[u])
        assert (distance.min(1).values < 1.0).all()                               # none between clusters
        nearest = distance.argmin(1)
        for true in range(3):
            mine = nearest == true
            assert mine.any(), f"unit {u}: no component for true component {true}"
            assert mine[assigned[labels == true, u]].all()                         # its tokens go to its components
            weights = anchors.weights[u, :k][mine]
            torch.testing.assert_close(weights.sum(), proportions[true], atol=1e-3, rtol=0)
            pooled = (weights[:, None] * means[mine]).sum(0) / weights.sum()
            torch.testing.assert_close(pooled, points[labels == true].mean(0), atol=1e-3, rtol=0)
            torch.testing.assert_close(pooled, true_means[u, true], atol=0.1, rtol=0)


def test_tokens_are_normalised_with_the_official_max_based_formula():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(300, 2, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 5.0])[:, None] + 3
    anchors = GaussianAnchors.fit(tokens, torch.Generator().manual_seed(0), AnchoringSettings(split_limit=0))
    for u in range(2):
        top, bottom = tokens[:, u].max(), tokens[:, u].min()
        assert anchors.token_max[u] == top and anchors.token_min[u] == bottom
        torch.testing.assert_close(anchors.normalise(tokens)[:, u], (tokens[:, u] - top) / (top - bottom + 1e-6))
    normalised = anchors.normalise(tokens)
    assert normalised.max() <= 0 and normalised.min() >= -1                      # (x - max): in [-1, 0]
    torch.testing.assert_close(anchors.denormalise(normalised), tokens)


def test_large_token_sets_are_fitted_on_a_ten_percent_subsample(monkeypatch):
    seen = []
    fit_mixture = ga.fit_mixture
    monkeypatch.setattr(ga, "fit_mixture", lambda x, g, s: seen.append(len(x)) or fit_mixture(x, g, s))
    tokens = torch.randn(2000, 2, 3, generator=torch.Generator().manual_seed(0))
    settings = AnchoringSettings(subsample_above=1000, split_limit=0)
    anchors = GaussianAnchors.fit(tokens, torch.Generator().manual_seed(0), settings)
    assert seen == [200, 200]
    assert anchors.token_max[0] == tokens[:, 0].max().double()                   # statistics of all tokens
    GaussianAnchors.fit(tokens[:1000], torch.Generator().manual_seed(0), settings)
    assert seen[2:] == [1000, 1000]                                              # at the threshold: all of them


def same_state(a: GaussianAnchors, b: GaussianAnchors) -> bool:
    return all(value.shape == b.state_dict()[key].shape and torch.equal(value, b.state_dict()[key])
               for key, value in a.state_dict().items())


def test_same_generator_state_same_fit_and_another_seed_another_fit():
    tokens = torch.randn(500, 3, 8, generator=torch.Generator().manual_seed(0))
    first, second, other = (GaussianAnchors.fit(tokens, torch.Generator().manual_seed(seed)) for seed in (1, 1, 2))
    assert same_state(first, second)
    assert not same_state(first, other)


def test_bad_settings_and_shapes_are_refused():
    with pytest.raises(ValueError, match="max_components 4 is below initial_components 8"):
        AnchoringSettings(max_components=4)
    with pytest.raises(ValueError, match="split_probability"):
        AnchoringSettings(split_probability=1.5)
    with pytest.raises(ValueError, match="unknown split_bookkeeping 'both'; valid: official, rounds"):
        AnchoringSettings(split_bookkeeping="both")
    with pytest.raises(ValueError, match=r"tokens must be \(N, units, D\)"):
        GaussianAnchors.fit(torch.zeros(10, 4), torch.Generator())
    with pytest.raises(ValueError, match="5 points cannot seed 8 components"):
        GaussianAnchors.fit(torch.randn(5, 1, 3), torch.Generator())
    config = {"dyga_em_iterations": 5, "dyga_min_mass": 2.0, "lr": 0.1}
    assert AnchoringSettings.from_config(config) == AnchoringSettings(em_iterations=5, min_mass=2.0)


# Anchoring ---------------------------------------------------------------------------------

def known_anchors() -> GaussianAnchors:
    """Two units of 3-d tokens; unit 0 has 2 components, unit 1 has 3 (so unit 0 is padded)."""
    unit0 = spherical(torch.tensor([[-0.8, -0.8, -0.8], [-0.2, -0.2, -0.2]], dtype=torch.float64), 0.01)
    unit1 = spherical(torch.tensor([[-0.9, -0.1, -0.5], [-0.1, -0.9, -0.5], [-0.5, -0.5, -0.1]],
                                   dtype=torch.float64), 0.01)
    return GaussianAnchors.from_mixtures([unit0, unit1], torch.tensor([2.0, 10.0]), torch.tensor([-2.0, 0.0]))


def test_anchoring_moves_each_token_toward_its_component_mean_by_exactly_lambda():
    anchors = known_anchors()
    g = torch.Generator().manual_seed(0)
    component = torch.stack([torch.randint(0, 2, (64,), generator=g), torch.randint(0, 3, (64,), generator=g)], 1)
    centres = anchors.token_means()                                               # (U, K, D)
    expected_target = centres[torch.arange(2), component].float()
    tokens = (expected_target + 0.05 * torch.randn(64, 2, 3, generator=g)).requires_grad_()

    assert torch.equal(anchors.assign(tokens), component)
    target = anchors.anchor_points(tokens)
    torch.testing.assert_close(target, expected_target)
    anchored, lam = anchors.anchor(tokens)
    c = tokens.detach()
    expected_lambda = 0.1 * torch.exp(-((c - expected_target) / (c + 1e-6)).abs().mean())
    torch.testing.assert_close(lam, expected_lambda)
    assert 0 < lam < 0.1 and lam.ndim == 0
    torch.testing.assert_close(anchored - c, lam * (target - c))                  # the move: lambda of the way
    torch.testing.assert_close(anchored, lam * target + (1 - lam) * c)

    assert lam.requires_grad                                                      # differentiable, as the official
    anchored.pow(2).sum().backward()
    reference = tokens.detach().clone().requires_grad_()                          # the official formula, written out
    ref_lambda = 0.1 * torch.exp(-((reference - expected_target) / (reference + 1e-6)).abs().mean())
    (ref_lambda * expected_target + (1 - ref_lambda) * reference).pow(2).sum().backward()
    torch.testing.assert_close(tokens.grad, reference.grad)
    through_lambda_too = tokens.grad - 2 * anchored.detach() * (1 - lam.detach())
    assert through_lambda_too.abs().max() > 1e-3                                  # not through (1 - lambda) c only


def test_anchoring_is_consistent_with_the_space_of_the_fit():
    """Tokens far from zero and in a unit with a large range: anchors land on the clusters."""
    centres = torch.tensor([[100.0, 90.0], [140.0, 150.0]], dtype=torch.float64)
    x, labels = blobs(centres, [200, 200], 0.5)
    tokens = x[:, None].float()
    anchors = GaussianAnchors.fit(tokens, torch.Generator().manual_seed(0), AnchoringSettings(split_limit=0))
    target = anchors.anchor_points(tokens)[:, 0].double()
    assert (target - centres[labels]).norm(dim=1).max() < 1.0                    # each token's own cluster
    anchored, lam = anchors.anchor(tokens)
    assert (anchored[:, 0] - target).norm(dim=1).mean() < (tokens[:, 0] - target).norm(dim=1).mean()


def test_state_round_trips_through_a_weights_only_checkpoint():
    tokens = torch.randn(400, 2, 6, generator=torch.Generator().manual_seed(0))
    anchors = GaussianAnchors.fit(tokens, torch.Generator().manual_seed(0))
    state = anchors.state_dict()
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    buffer = io.BytesIO()
    torch.save({"dyga": state}, buffer)
    buffer.seek(0)
    restored = GaussianAnchors.from_state_dict(torch.load(buffer, weights_only=True)["dyga"])
    for key, value in state.items():
        assert torch.equal(value, restored.state_dict()[key]), key
    assert torch.equal(restored.assign(tokens), anchors.assign(tokens))
    assert torch.equal(restored.anchor(tokens)[0], anchors.anchor(tokens)[0])
    for u in range(2):
        k = int(anchors.n_components[u])
        assert torch.equal(restored.mixture(u).means, anchors.means[u, :k])
        assert (anchors.weights[u, k:] == 0).all()
