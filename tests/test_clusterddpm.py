"""ClusterDDPM (methods/clusterddpm.py): the VaDE KL against Monte Carlo, the two MSE
reductions, the warm-started mixture, the EM loop on digits, samples, determinism, resuming,
and its place in the registry and the config."""
import numpy as np
import pytest
import torch

import datasets
import methods
from bench.config import method_config
from bench.runner import check_outputs
from evaluation.clustering import hungarian_accuracy
from methods.base import RunContext
from methods.clusterddpm import (ClusterDDPM, ClusterDDPMMethod, batch_loss, fit_mixture, mixture_log_joint,
                                 mixture_state, responsibilities, restore_mixture, vade_kl)
from methods.nets.diffusion import NoiseSchedule
from method_runs import Killed, data_slice, killed_after, log_rows
from method_runs import fit as fit_method

TINY = {"n_feat": 8, "z_dim": 4, "steps": 20, "pretrain_epochs": 1, "em_epochs": 2, "batch_size": 50,
        "samples_per_cluster": 2, "sample_batch": 7}


@pytest.fixture(scope="module")
def digits(prepared_data):
    dataset = datasets.get("digits")
    return dataset, dataset.load(prepared_data)


def digits_slice(digits, n):
    return data_slice(*digits, n)


def fit(data, config, run_dir, seed=0, context=RunContext):
    return fit_method("clusterddpm", data, config, run_dir, seed, context)


def random_mixture(k, d, g):
    weights = torch.rand(k, generator=g) + 0.2
    return {"weights": weights / weights.sum(), "means": torch.randn(k, d, generator=g),
            "variances": torch.rand(k, d, generator=g) + 0.3}


# The objective's pieces ---------------------------------------------------------------------

def test_vade_kl_matches_a_monte_carlo_estimate():
    """KL(q(z)q(c|x) || p(z|c)p(c)) with q(c|x) = gamma fixed: E_q[log q(z) - sum_c gamma_c log p(z|c)]
    + sum_c gamma_c log(gamma_c / pi_c), by sampling z ~ q."""
    g = torch.Generator().manual_seed(0)
    k, d = 4, 3
    mixture = random_mixture(k, d, g)
    mu, logvar = torch.randn(2, d, generator=g), torch.randn(2, d, generator=g) * 0.5
    z_gamma = torch.randn(2, d, generator=g)               # the draw that sets the responsibilities
    analytic = vade_kl(mu, logvar, z_gamma, mixture)

    gamma = mixture_log_joint(z_gamma, mixture).softmax(-1)
    q = torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1)
    z = mu + (0.5 * logvar).exp() * torch.randn((400_000, 2, d), generator=g)   # (S, 2, d) draws from q
    components = torch.distributions.Independent(
        torch.distributions.Normal(mixture["means"], mixture["variances"].sqrt()), 1)
    log_p = components.log_prob(z[:, :, None, :])            # (S, 2, k)
    monte_carlo = (q.log_prob(z) - (gamma * log_p).sum(-1)).mean(0) + (gamma * (gamma / mixture["weights"]).log()).sum(-1)
    torch.testing.assert_close(analytic, monte_carlo, atol=0.02, rtol=0.0)
    assert (analytic > 0).all()


def test_vade_kl_gradient_reaches_the_responsibility_draw():
    g = torch.Generator().manual_seed(1)
    mixture = random_mixture(3, 2, g)
    z = torch.randn(5, 2, generator=g, requires_grad=True)
    vade_kl(torch.randn(5, 2, generator=g), torch.zeros(5, 2), z, mixture).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_floored_responsibilities_are_uniform_far_from_every_component():
    """The official gamma = exp(log pi + log N) + 1e-10, normalised: a point 6 standard
    deviations from every component of a 32-d mixture gets a flat gamma, where the exact
    log-softmax still picks the narrowest component."""
    g = torch.Generator().manual_seed(4)
    k, d = 5, 32
    stds = torch.linspace(1.0, 2.0, k)[:, None].expand(k, d)
    directions = torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=-1)
    mixture = {"weights": torch.full((k,), 1 / k), "means": 6 * stds * directions, "variances": stds ** 2}
    z = torch.zeros(1, d)
    floored, log_floored = responsibilities(z, mixture, "floored")
    exact, _ = responsibilities(z, mixture, "exact")
    torch.testing.assert_close(floored, torch.full((1, k), 1 / k), atol=1e-3, rtol=0)
    torch.testing.assert_close(log_floored, (floored + 1e-10).log())
    assert exact.max() > 0.99
    tight = {**mixture, "variances": torch.full((k, d), 0.01)}        # near a tight component both agree
    torch.testing.assert_close(responsibilities(tight["means"][:1], tight, "floored")[0],
                               responsibilities(tight["means"][:1], tight, "exact")[0])


def test_pretraining_averages_and_the_m_step_sums_the_noise_error_over_pixels(digits):
    data = digits_slice(digits, 16)
    x0 = torch.from_numpy(np.asarray(data.fit.x, dtype=np.float32) / 255)
    config = {**method_config("clusterddpm", "smoke"), **TINY}
    torch.manual_seed(0)
    model = ClusterDDPM(1, 28, config)
    schedule = NoiseSchedule.linear(config["steps"], config["beta_start"], config["beta_end"])
    mixture = random_mixture(10, config["z_dim"], torch.Generator().manual_seed(2))
    pre_loss, pre_mse, pre_kl = batch_loss(model, x0, None, schedule, torch.Generator().manual_seed(3), config)
    em_loss, em_mse, em_kl = batch_loss(model, x0, mixture, schedule, torch.Generator().manual_seed(3), config)
    assert pre_kl == 0 and pre_loss == pre_mse
    torch.testing.assert_close(em_mse, pre_mse * 28 * 28)   # the same draws: only the reduction differs
    torch.testing.assert_close(em_loss, em_mse + config["kl_weight"] * em_kl)
    assert em_kl > 0


def test_mixture_warm_start_and_restore():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-3, 0.5, (200, 2)), rng.normal(3, 0.5, (200, 2))])
    config = {"gmm_max_iter": 100, "gmm_reg_covar": 1e-6}
    first = fit_mixture(z, 2, seed=0, config=config)
    assert fit_mixture(z, 2, seed=0, config=config).means_.tolist() == first.means_.tolist()
    warm = fit_mixture(z + 0.1, 2, seed=123, config=config, previous=mixture_state(first))
    # warm-started: the components keep their identity (no label switching) whatever the seed
    np.testing.assert_allclose(warm.means_, first.means_ + 0.1, atol=0.05)
    restored = restore_mixture(mixture_state(warm))
    np.testing.assert_array_equal(restored.predict(z), warm.predict(z))
    np.testing.assert_allclose(restored.predict_proba(z), warm.predict_proba(z))


# Training -------------------------------------------------------------------------------

def test_em_loop_alternates_between_the_two_steps(digits, tmp_path):
    config = {**method_config("clusterddpm", "smoke"), **TINY, "steps": 50, "pretrain_epochs": 2, "em_epochs": 3}
    fit(digits_slice(digits, 500), config, tmp_path)
    rows = log_rows(tmp_path)
    assert [row["stage"] for row in rows] == ["pretrain", "pretrain", "em", "em", "em"]
    assert [row["labels_changed"] for row in rows[:2]] == ["", ""]             # fresh fits: no identity to compare
    assert all(int(row["labels_changed"]) > 0 for row in rows[2:])             # every warm-started E-step moved labels
    assert float(rows[2]["mse"]) > 50 * float(rows[1]["mse"])                  # summed over 784 pixels from the M-step on
    assert float(rows[2]["kl"]) > 0 == float(rows[1]["kl"])


@pytest.mark.xfail(strict=False, reason=(
    "At CPU scale ClusterDDPM stays at chance. Here (smoke settings: lr 1e-3, z_dim 4, width 8, T 50, beta_end 0.3, "
    "batch 50, 2 pre-training epochs of 10 steps on 500 digits, an E-step per epoch), with the fresh EM Adam and every "
    "image, the largest cluster grows 20% -> 27% -> 33% over the 3 EM epochs and ACC ends at 0.158 (this test needs "
    "0.212, twice one cluster's 0.106; with the pre-training Adam carried over, one cluster took >90% within 2-5 EM "
    "epochs). With the official loop's dynamics (fresh EM Adam, gamma floor, "
    "every image, lr 1e-4, z 32, T 400, beta_end 0.02, batch 128, one E-step per epoch) on the 1,797 digits at width "
    "16 (paper 64), 10 pre-training epochs (150 steps; the paper ~5,500) and 8 EM epochs, seed 0: ACC 0.13-0.14 "
    "through pre-training (latent-mean spread 0.06 against draw noise 0.97: the UNet barely uses z), then the largest "
    "cluster grows 25% -> 27 -> 29 -> 31 -> 32 -> 34 -> 38 -> 40% while ACC falls 0.130 -> 0.117 and the KL (before "
    "its 0.1 weight) goes 3.6 -> 6.0 -> 11 -> 1,569 -> 4.1e6 (floored gamma: flat responsibilities weigh every "
    "collapsing component alike), clusters in use 10 -> 4; with exact responsibilities instead the KL stays at "
    "1.0-2.6 but the largest cluster still grows 25% -> 44% (46% one epoch before) and ACC ends at 0.117; k-means on the pixels: 0.805 (benchmarks/"
    "clusterddpm_trajectory.py). Issue 17 reports the same rise of KL and largest cluster for the authors' loop on "
    "10,000 MNIST digits. Whether the paper's regime avoids it needs the paper "
    "variant on a GPU."))
def test_clusters_digits_above_chance_after_a_short_run(digits, tmp_path):
    data = digits_slice(digits, 500)
    config = {**method_config("clusterddpm", "smoke"), **TINY, "steps": 50, "pretrain_epochs": 2, "em_epochs": 3}
    outputs = fit(data, config, tmp_path)
    labels = data.score.labels
    majority = np.bincount(labels).max() / len(labels)                          # one cluster for everything
    assert hungarian_accuracy(labels, outputs["assignments"]) > 2 * majority


def test_same_seed_same_numbers_and_valid_outputs(digits, tmp_path):
    data, config = digits_slice(digits, 150), {**method_config("clusterddpm", "smoke"), **TINY}
    first, second = fit(data, config, tmp_path / "a"), fit(data, config, tmp_path / "b")
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    check_outputs(first, 150, "clusterddpm")
    assert first["samples"].shape == (10 * 2, 1, 28, 28) and first["samples"].dtype == np.uint8
    assert first["sample_clusters"].tolist() == np.repeat(np.arange(10), 2).tolist()
    assert first["samples"].std() > 0                                           # not a blank canvas
    assert first["embedding"].shape == (150, 4) and first["probs"].shape == (150, 10)
    np.testing.assert_allclose(np.exp(first["log_probs"]), first["probs"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(first["assignments"], first["log_probs"].argmax(1))
    other = fit(data, config, tmp_path / "c", seed=1)
    assert not np.array_equal(other["embedding"], first["embedding"])


def test_every_image_every_epoch_and_a_fresh_optimiser_for_em(digits, tmp_path):
    """160 images in batches of 50: 4 steps an epoch (the last of 10 images). The first EM
    epoch's Adam has taken only its own 4 steps: nothing of the 8 pre-training steps."""
    data, config = digits_slice(digits, 160), {**method_config("clusterddpm", "smoke"), **TINY, "pretrain_epochs": 2,
                                               "em_epochs": 1}
    steps = {}

    class Recording(RunContext):
        def save_checkpoint(self, state):
            super().save_checkpoint(state)
            steps[state["epoch"]] = {int(s["step"]) for s in state["optimiser"]["state"].values()}
    fit(data, config, tmp_path, context=Recording)
    assert steps == {1: {4}, 2: {8}, 3: {4}}


@pytest.mark.parametrize("killed_at", [1, 2], ids=["end-of-pretraining", "inside-em"])
def test_an_interrupted_run_resumes_to_the_same_outputs(digits, tmp_path, killed_at):
    data, config = digits_slice(digits, 150), {**method_config("clusterddpm", "smoke"), **TINY}

    with pytest.raises(Killed):
        fit(data, config, tmp_path / "resumed", context=killed_after(killed_at))
    assert [row["epoch"] for row in log_rows(tmp_path / "resumed")] == [str(e) for e in range(1, killed_at + 1)]
    resumed, uninterrupted = fit(data, config, tmp_path / "resumed"), fit(data, config, tmp_path / "straight")
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "straight")
    for key in uninterrupted:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key])


@pytest.mark.parametrize("key, value, message", [
    ("n_feat", 12, "multiple of 8"),
    ("pretrain_epochs", 0, "pretrain_epochs must be at least 1"),
    ("beta_end", 0.00001, "beta_start < beta_end"),
    ("steps", 5, r"keeps alpha_bar_T = 0\.\d+ of the signal"),
    ("batch_size", 1000, "larger than the 100 training images"),
])
def test_bad_settings_are_refused_before_training(digits, tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        fit(digits_slice(digits, 100), {**method_config("clusterddpm", "smoke"), key: value}, tmp_path)
    assert not (tmp_path / "train_log.csv").exists()


def test_registry_config_and_paper_settings():
    assert isinstance(methods.get("clusterddpm"), ClusterDDPMMethod)
    paper = method_config("clusterddpm", "paper")
    assert (paper["steps"], paper["pretrain_epochs"], paper["em_epochs"], paper["batch_size"], paper["lr"],
            paper["z_dim"], paper["kl_weight"], paper["fit_split"]) == (400, 10, 570, 128, 1e-4, 32, 0.1, "all")
    model = ClusterDDPM(1, 28, paper)
    assert 1.9e6 < sum(p.numel() for p in model.parameters()) < 2.1e6   # "about 2.0 M parameters in all"
