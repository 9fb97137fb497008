"""GMVAE (methods/gmvae.py): the pieces of its objective against torch.distributions, the
free-bits threshold and the sign quirk, clustering on digits against k-means, determinism,
resuming from a checkpoint, and its place in the registry and the config."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch.distributions import Categorical, Independent, MultivariateNormal, Normal, kl_divergence

import datasets
import methods
from bench.config import load_methods, method_config
from bench.runner import check_outputs
from datasets.base import Split
from evaluation.clustering import hungarian_accuracy
from methods.base import RunContext, RunData
from methods.gmvae import (GMVAE, GMVAEMethod, cluster_log_posterior, entropy, flip_gradient, free_bits,
                           gaussian_kl, kl_to_uniform)
from method_runs import Killed, killed_after, log_rows

TINY = {"epochs": 3, "checkpoint_every": 1, "hidden": 32, "x_dim": 8, "w_dim": 4}


@pytest.fixture(scope="module")
def digits(prepared_data):
    dataset = datasets.get("digits")
    return dataset, dataset.load(prepared_data)


def digits_slice(digits, n):
    dataset, split = digits
    part = Split("all", np.asarray(split.x[:n]), np.asarray(split.labels[:n]))
    return RunData(dataset, part, part)


def fit(data, config, run_dir, seed=0, context=RunContext):
    run_dir.mkdir(parents=True, exist_ok=True)
    return GMVAEMethod().fit(data, config, context(run_dir, seed, "cpu"))


# The pieces of the objective ------------------------------------------------------------

def test_cluster_posterior_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    x, mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 4, 3, generator=g), torch.randn(5, 4, 3, generator=g)
    direct = torch.stack([MultivariateNormal(mu[:, k], torch.diag_embed(logvar[:, k].exp())).log_prob(x)
                          for k in range(4)], -1).softmax(-1)
    by_normal = Independent(Normal(mu, (0.5 * logvar).exp()), 1).log_prob(x.unsqueeze(1)).softmax(-1)
    ours = cluster_log_posterior(x, mu, logvar).exp()
    torch.testing.assert_close(ours, direct)
    torch.testing.assert_close(ours, by_normal)
    torch.testing.assert_close(ours.sum(-1), torch.ones(5))


def test_kl_terms_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu_q, lv_q, mu_p, lv_p = (torch.randn(6, 7, generator=g) for _ in range(4))
    normal = lambda mu, lv: Independent(Normal(mu, (0.5 * lv).exp()), 1)  # noqa: E731
    torch.testing.assert_close(gaussian_kl(mu_q, lv_q, mu_p, lv_p), kl_divergence(normal(mu_q, lv_q), normal(mu_p, lv_p)))
    zeros = torch.zeros_like(mu_q)                                          # the w-prior: KL to N(0, I)
    torch.testing.assert_close(gaussian_kl(mu_q, lv_q, zeros, zeros), kl_divergence(normal(mu_q, lv_q), normal(zeros, zeros)))
    logits = torch.randn(6, 10, generator=g) * 3
    log_p = logits.log_softmax(-1)                                          # the z-prior: KL to uniform
    uniform = Categorical(probs=torch.full((6, 10), 0.1))
    torch.testing.assert_close(kl_to_uniform(log_p), kl_divergence(Categorical(logits=logits), uniform))
    torch.testing.assert_close(entropy(log_p), Categorical(logits=logits).entropy())


def test_z_prior_gives_gradient_only_above_the_threshold():
    logits = torch.tensor([[0.1, 0.0, -0.1, 0.0], [5.0, 0.0, 0.0, 0.0]], requires_grad=True)
    value = kl_to_uniform(logits.log_softmax(-1))
    assert value[0] < 0.5 < value[1]
    free_bits(value, 0.5).sum().backward()
    assert torch.equal(logits.grad[0], torch.zeros(4))
    assert logits.grad[1].abs().sum() > 0


def test_z_prior_gradient_stays_finite_when_the_posterior_underflows():
    logits = torch.tensor([[200.0, 0.0, -200.0]], requires_grad=True)
    (kl_to_uniform(logits.log_softmax(-1)) + entropy(logits.log_softmax(-1))).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_sign_quirk_negates_the_conditional_prior_gradient_where_the_z_prior_exceeds_lambda():
    value = torch.tensor([1.0, 2.0], requires_grad=True)
    flipped = flip_gradient(value * 3, torch.tensor([True, False]))
    flipped.sum().backward()
    assert torch.equal(flipped.detach(), torch.tensor([3.0, 6.0])) and torch.equal(value.grad, torch.tensor([-3.0, 3.0]))

    # In the model: loss(quirk) has the same value, and gradient = grad(loss) - 2 grad(cond_prior where exceeded).
    config = {**method_config("gmvae", "smoke"), "sign_quirk": True}
    torch.manual_seed(0)
    model, y = GMVAE((1, 28, 28), config, 10), torch.rand(20, 1, 28, 28)

    def gradient(quirk, of="loss"):
        model.config = {**config, "sign_quirk": quirk}
        terms = model.terms(y, torch.Generator().manual_seed(3))
        exceeded = (terms["z_prior"] > config["lambda_threshold"]).float()
        target = {"loss": terms["loss"], "cond": terms["cond_prior"] * exceeded}[of].mean()
        model.zero_grad()
        target.backward()
        return target.item(), torch.cat([p.grad.flatten() for p in model.prior_mean.parameters()]), exceeded
    plain, quirk, (_, cond, exceeded) = gradient(False), gradient(True), gradient(False, of="cond")
    assert 0 < exceeded.sum() < len(exceeded), "the batch should have examples on both sides of lambda"
    assert quirk[0] == pytest.approx(plain[0])
    torch.testing.assert_close(quirk[1], plain[1] - 2 * cond)
    assert (quirk[1] - plain[1]).abs().max() > 1e-6


def test_sign_quirk_is_off_by_default_and_refused_with_v1(digits, tmp_path):
    spec = load_methods()["methods"]["gmvae"]
    assert spec["defaults"]["sign_quirk"] is False
    assert all("sign_quirk" not in variant for variant in spec["variants"].values())
    with pytest.raises(ValueError, match="sign_quirk concerns the final objective"):
        fit(digits_slice(digits, 100), {**method_config("gmvae", "smoke"), "objective": "v1", "sign_quirk": True}, tmp_path)


@pytest.mark.parametrize("key, value, valid", [("objective", "v3", "v1, final"), ("architecture", "resnet", "conv, mlp"),
                                               ("likelihood", "poisson", "bernoulli, gaussian")])
def test_bad_names_are_refused_before_training(digits, tmp_path, key, value, valid):
    with pytest.raises(ValueError, match=f"unknown {key} '{value}'; valid: {valid}"):
        fit(digits_slice(digits, 100), {**method_config("gmvae", "smoke"), key: value}, tmp_path)
    assert not (tmp_path / "train_log.csv").exists()


# Training -------------------------------------------------------------------------------

def test_clusters_digits_at_least_as_well_as_kmeans(digits, tmp_path):
    data = digits_slice(digits, 1000)
    outputs = fit(data, method_config("gmvae", "quick"), tmp_path)       # final objective, mlp, 60 epochs
    labels = data.score.labels
    ours = hungarian_accuracy(labels, outputs["assignments"])
    pixels = data.fit.x.reshape(len(labels), -1) / 255.0
    kmeans = hungarian_accuracy(labels, KMeans(n_clusters=10, random_state=0).fit(pixels).labels_)
    assert ours > 0.5 and ours >= kmeans, (ours, kmeans)                   # chance is about 0.1
    assert len(np.unique(outputs["assignments"])) == 10


def test_same_seed_same_numbers_and_valid_outputs(digits, tmp_path):
    data, config = digits_slice(digits, 200), {**method_config("gmvae", "smoke"), **TINY}
    first, second = fit(data, config, tmp_path / "a"), fit(data, config, tmp_path / "b")
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    check_outputs(first, 200, "gmvae")
    assert first["assignments"].dtype == np.int64 and first["probs"].dtype == np.float32
    assert first["probs"].shape == (200, 10) and first["embedding"].shape == (200, TINY["x_dim"])
    assert first["samples"].dtype == np.uint8 and first["samples"].shape == (10 * 3, 1, 28, 28)
    np.testing.assert_array_equal(first["sample_clusters"], np.repeat(np.arange(10), 3))
    other = fit(data, config, tmp_path / "c", seed=1)
    assert log_rows(tmp_path / "c") != log_rows(tmp_path / "a")
    assert not np.array_equal(other["probs"], first["probs"])


@pytest.mark.parametrize("architecture, objective, likelihood, m", [("conv", "v1", "bernoulli", 2), ("conv", "final", "gaussian", 1),
                                                                    ("mlp", "v1", "gaussian", 3)])
def test_every_architecture_objective_and_likelihood_trains(digits, tmp_path, architecture, objective, likelihood, m):
    config = {**method_config("gmvae", "smoke"), **TINY, "epochs": 1, "k": 4, "architecture": architecture,
              "objective": objective, "likelihood": likelihood, "m_samples": m}
    outputs = fit(digits_slice(digits, 100), config, tmp_path)
    check_outputs(outputs, 100, "gmvae")
    assert outputs["probs"].shape == (100, 4) and outputs["samples"].shape == (4 * 3, 1, 28, 28)
    assert "head_agreement" in log_rows(tmp_path)[0] if objective == "v1" else "consistency" not in log_rows(tmp_path)[0]


def test_an_interrupted_run_resumes_to_the_same_outputs(digits, tmp_path):
    data, config = digits_slice(digits, 200), {**method_config("gmvae", "smoke"), **TINY, "objective": "v1"}

    with pytest.raises(Killed):
        fit(data, config, tmp_path / "resumed", context=killed_after(2))
    assert [row["epoch"] for row in log_rows(tmp_path / "resumed")] == ["1", "2"]
    resumed, uninterrupted = fit(data, config, tmp_path / "resumed"), fit(data, config, tmp_path / "straight")
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "straight")
    for key in uninterrupted:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key])


def test_non_finite_loss_names_epoch_and_step(digits, tmp_path, monkeypatch):
    terms = GMVAE.terms

    def poisoned(self, y, generator):
        result = terms(self, y, generator)
        result["loss"] = result["loss"] * float("nan")
        return result
    monkeypatch.setattr(GMVAE, "terms", poisoned)
    with pytest.raises(FloatingPointError, match="at epoch 1, step 0"):
        fit(digits_slice(digits, 100), {**method_config("gmvae", "smoke"), **TINY}, tmp_path)


# Registry and config --------------------------------------------------------------------

def test_registry_and_config():
    assert isinstance(methods.get("gmvae"), GMVAEMethod)
    assert method_config("gmvae", "quick")["objective"] == "final"
    for k in (10, 16):
        for m in (1, 10):
            paper = method_config("gmvae", f"paper-v1-k{k}-m{m}")
            assert (paper["objective"], paper["k"], paper["m_samples"], paper["architecture"]) == ("v1", k, m, "conv")
            assert (paper["fit_split"], paper["score_split"], paper["lr"], paper["batch_size"], paper["epochs"]) == \
                ("train", "test", 1e-4, 50, 100)
    final = method_config("gmvae", "paper-final-k10-m1")
    assert (final["objective"], final["lambda_threshold"], final["cv_weight"]) == ("final", 0.5, 0.4)
