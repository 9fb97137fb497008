"""β-VAE / β-TCVAE (methods/beta_vae.py): the TC estimator against a direct computation, the
networks at 32x32 and 64x64, factor information in the latent means on a slice of sprites,
traversals and samples, determinism, resuming, refused settings, registry and config."""
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

import datasets
import methods
from bench.config import method_config
from bench.runner import check_outputs
from datasets.base import Split
from methods.base import RunContext, RunData
from methods.beta_vae import BetaVAE, BetaVAEMethod, gaussian_log_density, total_correlation
from method_runs import Killed, killed_after, log_rows

TINY = {"steps": 32, "batch_size": 32, "checkpoint_every": 1, "n_samples": 12, "traversal_steps": 5}


@pytest.fixture(scope="module")
def sprites(prepared_data):
    dataset = datasets.get("sprites")
    return dataset, dataset.load(prepared_data)


def sprites_slice(sprites, n, seed=0):
    dataset, split = sprites
    pick = np.sort(np.random.default_rng(seed).choice(len(split), n, replace=False))
    part = Split("all", np.asarray(split.x[pick]), None, np.asarray(split.factors[pick]))
    return RunData(dataset, part, part)


def fit(data, config, run_dir, seed=0, context=RunContext):
    run_dir.mkdir(parents=True, exist_ok=True)
    return methods.get("beta_vae").fit(data, config, context(run_dir, seed, "cpu"))


# The objective and the networks ----------------------------------------------------------------

def test_total_correlation_matches_a_direct_minibatch_weighted_estimate():
    g = torch.Generator().manual_seed(0)
    m, d, n_data = 6, 3, 1000
    mu, logvar = torch.randn(m, d, generator=g), torch.randn(m, d, generator=g) * 0.3
    z = mu + (0.5 * logvar).exp() * torch.randn(m, d, generator=g)
    expected = 0.0
    for j in range(m):
        density = lambda i, dims: math.exp(sum(gaussian_log_density(z[j, l], mu[i, l], logvar[i, l]).item()  # noqa: E731
                                               for l in dims))
        log_qz = math.log(sum(density(i, range(d)) for i in range(m)) / (n_data * m))
        log_marginals = sum(math.log(sum(density(i, [l]) for i in range(m)) / (n_data * m)) for l in range(d))
        expected += (log_qz - log_marginals) / m
    assert total_correlation(z, mu, logvar, n_data).item() == pytest.approx(expected, rel=1e-4)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar),
                               torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z))


def test_objectives_combine_their_terms_as_documented():
    torch.manual_seed(0)
    model, x = BetaVAE((1, 32, 32), 4), torch.rand(8, 1, 32, 32)
    beta = model.terms(x, {"objective": "beta", "beta": 3.0}, 100, torch.Generator().manual_seed(1))
    assert beta["loss"].item() == pytest.approx(beta["recon"].item() + 3 * beta["kl"].item(), rel=1e-6)
    assert "tc" not in beta
    tcvae = model.terms(x, {"objective": "tcvae", "beta": 3.0}, 100, torch.Generator().manual_seed(1))
    torch.testing.assert_close(tcvae["recon"], beta["recon"])                    # the same draw of z
    assert tcvae["loss"].item() == pytest.approx((tcvae["recon"] + tcvae["kl"] + 2 * tcvae["tc"]).item(), rel=1e-6)


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 64, 64)])
def test_networks_take_32_and_64_pixel_images(shape):
    model = BetaVAE(shape, 10)
    mu, logvar = model.encode(torch.rand(2, *shape))
    assert mu.shape == logvar.shape == (2, 10)
    assert model.decoder(mu).shape == (2, *shape)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(w, (4, 4), (2, 2)) for w in (32, 32, 64, 64)]


# Training on sprites ------------------------------------------------------------------------------

def test_latent_means_carry_the_position_of_the_sprite(sprites, tmp_path):
    data = sprites_slice(sprites, 1536)
    config = {**method_config("beta_vae", "quick"), "steps": 192, "lr": 0.001, "n_samples": 64}   # 8 epochs
    outputs = fit(data, config, tmp_path)
    check_outputs(outputs, 1536, "beta_vae")
    rows = log_rows(tmp_path)
    assert float(rows[-1]["recon"]) < 0.5 * float(rows[0]["recon"])

    def probe(codes):
        """R^2 on held-out rows of a ridge regression from the codes to the x and y positions."""
        targets = data.score.factors[:, 3:5].astype(float)
        model = Ridge(alpha=1.0).fit(codes[:1024], targets[:1024])
        return model.score(codes[1024:], targets[1024:])
    ours = probe(outputs["embedding"])
    random_codes = probe(np.random.default_rng(0).normal(size=outputs["embedding"].shape))
    assert ours > 0.5 and random_codes < 0.05, (ours, random_codes)


def test_outputs_traversals_and_samples_have_their_shapes(sprites, tmp_path):
    data, config = sprites_slice(sprites, 256), {**method_config("beta_vae", "smoke"), **TINY}
    outputs = fit(data, config, tmp_path)
    check_outputs(outputs, 256, "beta_vae")
    assert outputs["embedding"].shape == (256, 10) and outputs["embedding"].dtype == np.float32
    assert outputs["samples"].shape == (12, 1, 32, 32) and outputs["samples"].dtype == np.uint8
    assert outputs["traversals"].shape == (10, 5, 1, 32, 32) and outputs["traversals"].dtype == np.uint8
    assert set(outputs) == {"embedding", "samples", "traversals"}


def test_a_traversal_row_sweeps_one_unit_of_one_image_mean(sprites, tmp_path):
    torch.manual_seed(0)
    model = BetaVAE((1, 32, 32), 3).eval()
    images = torch.from_numpy(np.array(sprites[1].x[:50]))
    config = {"traversal_steps": 4, "traversal_range": 1.5}
    run = RunContext(tmp_path, 7, "cpu")
    traversal = BetaVAEMethod.traverse(model, images, config, run)
    assert traversal.shape == (3, 4, 1, 32, 32)
    index = int(run.rng(1).integers(50))
    with torch.no_grad():
        mean = model.mean(images[index:index + 1].float() / 255)[0]
        for unit in range(3):
            for step, value in enumerate(torch.linspace(-1.5, 1.5, 4)):
                code = mean.clone()
                code[unit] = value
                torch.testing.assert_close(traversal[unit, step], model.decode(code[None])[0])


def test_same_seed_same_numbers_another_seed_others(sprites, tmp_path):
    data, config = sprites_slice(sprites, 256), {**method_config("beta_vae", "smoke"), **TINY, "objective": "tcvae"}
    first, second = fit(data, config, tmp_path / "a"), fit(data, config, tmp_path / "b")
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")
    assert "tc" in log_rows(tmp_path / "a")[0]
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    other = fit(data, config, tmp_path / "c", seed=1)
    assert log_rows(tmp_path / "c") != log_rows(tmp_path / "a")
    assert not np.array_equal(other["embedding"], first["embedding"])


def test_an_interrupted_run_resumes_to_the_same_outputs(sprites, tmp_path):
    data, config = sprites_slice(sprites, 256), {**method_config("beta_vae", "smoke"), **TINY}

    with pytest.raises(Killed):
        fit(data, config, tmp_path / "resumed", context=killed_after(2))
    assert [row["epoch"] for row in log_rows(tmp_path / "resumed")] == ["1", "2"]
    resumed, straight = fit(data, config, tmp_path / "resumed"), fit(data, config, tmp_path / "straight")
    assert [row["epoch"] for row in log_rows(tmp_path / "straight")] == ["1", "2", "3", "4"]   # 32 steps of 8
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "straight")
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key])


def test_bad_settings_are_refused_before_training(sprites, tmp_path):
    data, smoke = sprites_slice(sprites, 64), {**method_config("beta_vae", "smoke"), "batch_size": 32}
    with pytest.raises(ValueError, match="unknown objective 'factor'; valid: beta, tcvae"):
        fit(data, {**smoke, "objective": "factor"}, tmp_path)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        fit(data, {**smoke, "steps": 0}, tmp_path)
    with pytest.raises(ValueError, match="batch_size 128 is larger than the 64 training examples"):
        fit(data, {**smoke, "batch_size": 128}, tmp_path)
    odd = Split("all", np.zeros((64, 1, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"side divisible by 16 .* shape \(1, 28, 28\)"):
        fit(RunData(data.dataset, odd, odd), smoke, tmp_path)
    assert not (tmp_path / "train_log.csv").exists()


# Registry and config ------------------------------------------------------------------------------

def test_registry_and_config():
    method = methods.get("beta_vae")
    assert isinstance(method, BetaVAEMethod) and method.tracks == ("disentanglement", "generation")
    paper = method_config("beta_vae", "paper")
    assert (paper["objective"], paper["latent"], paper["batch_size"], paper["lr"], paper["steps"]) == \
        ("beta", 10, 64, 1e-4, 300000)
    assert method_config("beta_vae", "paper-tcvae")["objective"] == "tcvae"
    assert method_config("beta_vae", "quick")["n_samples"] >= 2048                 # FID's minimum
