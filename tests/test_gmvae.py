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
from methods.gmvae import (GMVAE, GMVAEMethod, cluster_log_posterior, entropy, final_cluster_terms, free_bits,
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


def quirk_gradients(z_prior_logits, config):
    """Gradients of the final objective's conditional prior + z-prior loss with respect to
    the log-posteriors and the component KLs, for one draw (M = 1)."""
    log_posterior = z_prior_logits.log_softmax(-1)[None].detach().requires_grad_()
    kl_x = torch.rand(log_posterior.shape, generator=torch.Generator().manual_seed(5)).requires_grad_()
    cond_prior, z_prior, z_loss = final_cluster_terms(log_posterior, kl_x, config)
    (cond_prior + z_loss).sum().backward()
    return log_posterior.grad, kl_x.grad, z_prior.detach()


def parts(log_posterior_logits, config):
    """The same gradients split by path: the conditional prior through the responsibilities,
    and the z-prior (weighted), each alone."""
    log_posterior = log_posterior_logits.log_softmax(-1)[None].detach().requires_grad_()
    kl_x = torch.rand(log_posterior.shape, generator=torch.Generator().manual_seed(5))
    through_r, = torch.autograd.grad((log_posterior.exp() * kl_x).sum(), log_posterior)
    z_prior, = torch.autograd.grad(kl_to_uniform(log_posterior).sum() * config["cv_weight"], log_posterior)
    return through_r, z_prior


@pytest.mark.parametrize("case", ["gate-open", "gate-closed"])
def test_sign_quirk_is_the_torch_code_batch_gate_and_the_responsibilities_path_only(case):
    """version2 main.lua L241-245: when the batch-mean z-prior exceeds lambda, the
    responsibilities' gradient (conditional prior's + z-prior's) is negated as a sum, for
    every example of the batch; the KLs' own gradient never is. Under lambda on average,
    nothing is negated and the z-prior gives no gradient, even for an example above lambda."""
    config = {**method_config("gmvae", "smoke"), "sign_quirk": True}
    sharp, flat = torch.tensor([6.0, 0.0, 0.0, 0.0]), torch.tensor([0.1, 0.0, -0.1, 0.0])
    logits = torch.stack([sharp, sharp, flat] if case == "gate-open" else [sharp, flat, flat, flat])
    grad_log_posterior, grad_kl, z_prior = quirk_gradients(logits, config)
    assert (z_prior > 0.5).any() and (z_prior < 0.5).any()          # examples on both sides of lambda
    through_r, z_grad = parts(logits, config)
    np.testing.assert_allclose(grad_kl[0], logits.softmax(-1), rtol=1e-6)   # the KLs' path: never flipped
    if case == "gate-open":
        assert z_prior.mean() > 0.5
        torch.testing.assert_close(grad_log_posterior, -through_r + z_grad)
    else:
        assert z_prior.mean() < 0.5
        torch.testing.assert_close(grad_log_posterior, through_r)
    plain = {**config, "sign_quirk": False}                           # the correct gradient, per example
    grad_plain, _, _ = quirk_gradients(logits, plain)
    above = (z_prior > 0.5).float()[None, :, None]
    torch.testing.assert_close(grad_plain, through_r + z_grad * above)


def test_sign_quirk_is_off_by_default_on_in_paper_final_and_refused_with_v1(digits, tmp_path):
    spec = load_methods()["methods"]["gmvae"]
    assert spec["defaults"]["sign_quirk"] is False
    assert [name for name, variant in spec["variants"].items() if variant.get("sign_quirk")] == ["paper-final-k10-m1"]
    with pytest.raises(ValueError, match="sign_quirk concerns the final objective"):
        fit(digits_slice(digits, 100), {**method_config("gmvae", "smoke"), "objective": "v1", "sign_quirk": True}, tmp_path)


def test_v1_reads_out_the_q_z_head_and_gives_the_mixture_posterior_beside_it(digits):
    config = {**method_config("gmvae", "smoke"), **TINY, "objective": "v1"}
    torch.manual_seed(0)
    model = GMVAE((1, 28, 28), config, 10).eval()
    y = torch.from_numpy(np.asarray(digits_slice(digits, 64).fit.x, dtype=np.float32) / 255)
    head, mixture, mu_x = model.readout(y)
    with torch.no_grad():
        hidden = model.encoder(y)
        torch.testing.assert_close(head, model.z_head(hidden).log_softmax(-1))
        mu_w = model.w_head(hidden).chunk(2, -1)[0]
        torch.testing.assert_close(mixture, cluster_log_posterior(mu_x, *model.prior(mu_w)))
    assert not torch.allclose(head, mixture)


def test_v1_outputs_the_head_and_the_mixture_posterior_final_only_the_latter(digits, tmp_path):
    data = digits_slice(digits, 100)
    for objective in ("v1", "final"):
        outputs = fit(data, {**method_config("gmvae", "smoke"), **TINY, "epochs": 1, "objective": objective},
                      tmp_path / objective)
        check_outputs(outputs, 100, "gmvae")
        np.testing.assert_array_equal(outputs["assignments"], outputs["log_probs"].argmax(1))
        np.testing.assert_allclose(outputs["probs"], np.exp(outputs["log_probs"]), rtol=1e-6)
        assert ("log_probs_mixture_posterior" in outputs) == (objective == "v1")


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
            assert paper["alpha"] == 0.4                                  # the MNIST run script's -cvWeight
    assert method_config("gmvae", "paper-v1-k14-m1")["k"] == 14           # the run script's K
    final = method_config("gmvae", "paper-final-k10-m1")
    assert (final["objective"], final["lambda_threshold"], final["cv_weight"], final["sign_quirk"]) == ("final", 0.5, 0.4, True)
