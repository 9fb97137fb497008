"""NMM (methods/nmm.py): the E-step, the M-step's stop-gradient, the batch density
normalisation and the consistency term against direct computations; the density constraint
against collapse on blobs; clustering on digits against k-means; determinism, resuming from a
checkpoint, clear config errors, and its place in the registry and the config.

The digits comparison runs the quick variant on the first 1,000 digits for 15 epochs (instead
of 30 on all 1,797) to stay within the test budget; it still has to beat k-means on raw pixels
(ACC about 0.745 on that slice) and chance."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

import datasets
import methods
from bench.config import method_config
from bench.runner import check_outputs
from datasets.base import Split
from evaluation.clustering import hungarian_accuracy
from methods.base import RunContext, RunData
from methods.nmm import NMMMethod, augment, consistency_loss, e_step, em_loss, log_densities, sharpen
from method_runs import Killed, killed_after, log_rows

TINY = {"epochs": 3, "checkpoint_every": 1, "width": 4, "batch_size": 50}


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
    return NMMMethod().fit(data, config, context(run_dir, seed, "cpu"))


def scores(seed, b=7, k=3, scale=2.0):
    return torch.randn(b, k, generator=torch.Generator().manual_seed(seed)) * scale


# The pieces of the objective ------------------------------------------------------------

def test_batch_density_normalisation_sums_to_one_over_the_batch_per_cluster():
    s = scores(0)
    f = log_densities(s, constrained=True).exp()
    torch.testing.assert_close(f.sum(0), torch.ones(3))
    torch.testing.assert_close(f[:, 1], torch.exp(s[:, 1]) / torch.exp(s[:, 1]).sum())
    assert torch.equal(log_densities(s, constrained=False), s)


def test_e_step_matches_a_direct_computation():
    log_f = log_densities(scores(1), True)
    log_pi, gamma = e_step(log_f)
    f = log_f.exp()
    uniform = f / f.sum(1, keepdim=True)                     # responsibilities under equal weights
    pi = uniform.mean(0)
    direct = pi * f / (pi * f).sum(1, keepdim=True)
    torch.testing.assert_close(log_pi.exp(), pi)
    torch.testing.assert_close(gamma, direct)
    torch.testing.assert_close(gamma.sum(1), torch.ones(7))
    torch.testing.assert_close(sharpen(gamma, 1.0), gamma)
    sharp = sharpen(gamma, 0.5)
    torch.testing.assert_close(sharp, gamma ** 2 / (gamma ** 2).sum(1, keepdim=True))


def test_m_step_gradient_does_not_flow_through_the_responsibilities():
    s = scores(2).requires_grad_()
    log_f = log_densities(s, True)
    log_pi, gamma = e_step(log_f)
    assert not gamma.requires_grad and not log_pi.requires_grad
    (grad,) = torch.autograd.grad(em_loss(log_f, log_pi, gamma), s, retain_graph=True)
    # d/ds_ik of -(1/B) sum_i,k gamma_ik log_softmax_i(s)_ik, with gamma constant:
    f, b = log_f.detach().exp(), len(s)
    torch.testing.assert_close(grad, -(gamma - f * gamma.sum(0)) / b)
    # Letting gamma carry gradient gives another (here: zero, the flat log-likelihood) gradient.
    live = (log_pi + log_f).softmax(1)
    (through,) = torch.autograd.grad(-(live * (log_pi + log_f)).sum(1).mean(), s)
    assert (through - grad).abs().max() > 1e-4


def test_consistency_loss_is_symmetric_with_no_gradient_through_its_targets():
    s_a, s_b = scores(3).requires_grad_(), scores(4).requires_grad_()
    views = [(log_densities(s, True), *e_step(log_densities(s, True))) for s in (s_a, s_b)]
    forward, backward = consistency_loss(*views), consistency_loss(*views[::-1])
    torch.testing.assert_close(forward, backward)
    (f_a, pi_a, g_a), (f_b, pi_b, g_b) = views
    torch.testing.assert_close(forward, (em_loss(f_b, pi_b, g_a) + em_loss(f_a, pi_a, g_b)) / 2)
    # The gradient to view b comes only from its own densities (targets from a are constants).
    (grad_b,) = torch.autograd.grad(forward, s_b, retain_graph=True)
    f_b_value = f_b.detach().exp()
    torch.testing.assert_close(grad_b, -(g_a - f_b_value * g_a.sum(0)) / 7 / 2)
    assert not g_a.requires_grad and not g_b.requires_grad


def test_augmentations_are_drawn_from_the_generator_and_keep_digits_unflipped():
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    config = method_config("nmm", "smoke")
    first, second = (augment(x, torch.Generator().manual_seed(5), config) for _ in range(2))
    assert torch.equal(first, second) and first.shape == x.shape and 0 <= first.min() and first.max() <= 1
    assert not torch.equal(first, augment(x, torch.Generator().manual_seed(6), config))
    grey = torch.rand(4, 1, 28, 28)
    no_crop = {**config, "crop_scale_min": 1.0}          # area 1, aspect ratio may still stretch a little
    view = augment(grey, torch.Generator().manual_seed(0), no_crop)
    assert view.shape == grey.shape and (view - grey).abs().mean() < (view - grey.flip(-1)).abs().mean()


# Training -------------------------------------------------------------------------------

def test_the_density_constraint_prevents_collapse_on_blobs(prepared_data, tmp_path):
    dataset = datasets.get("blobs")
    split = dataset.load(prepared_data)
    data = RunData(dataset, split, split)
    config = {**method_config("nmm", "quick"), "objective": "em", "width": 32, "batch_size": 200, "epochs": 20}
    constrained = fit(data, config, tmp_path / "with")
    free = fit(data, {**config, "density_constraint": False}, tmp_path / "without")
    assert len(np.unique(constrained["assignments"])) == 5
    assert np.bincount(constrained["assignments"]).max() / 1000 < 0.4
    assert hungarian_accuracy(split.labels, constrained["assignments"]) > 0.6
    # Without it: fewer clusters in use, one of them large, and the outputs grow without bound
    # (the M-step loss is >= 0 for true densities; it goes negative).
    assert len(np.unique(free["assignments"])) <= 3
    assert np.bincount(free["assignments"]).max() / 1000 > 0.4
    assert float(log_rows(tmp_path / "without")[-1]["em"]) < 0 <= float(log_rows(tmp_path / "with")[-1]["em"])


def test_clusters_digits_better_than_kmeans_and_chance(digits, tmp_path):
    data = digits_slice(digits, 1000)
    outputs = fit(data, {**method_config("nmm", "quick"), "epochs": 15}, tmp_path)   # em+consistency
    labels = data.score.labels
    ours = hungarian_accuracy(labels, outputs["assignments"])
    pixels = data.fit.x.reshape(len(labels), -1) / 255.0
    kmeans = hungarian_accuracy(labels, KMeans(n_clusters=10, random_state=0).fit(pixels).labels_)
    assert ours > kmeans > 0.2, (ours, kmeans)                                       # chance is about 0.1
    assert len(np.unique(outputs["assignments"])) == 10


def test_same_seed_same_numbers_and_valid_outputs(digits, tmp_path):
    data, config = digits_slice(digits, 200), {**method_config("nmm", "smoke"), **TINY}
    first, second = fit(data, config, tmp_path / "a"), fit(data, config, tmp_path / "b")
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    check_outputs(first, 200, "nmm")
    assert first["assignments"].dtype == np.int64 and first["probs"].dtype == np.float32
    assert first["probs"].shape == (200, 10) and first["embedding"].shape == (200, 8 * TINY["width"])
    np.testing.assert_allclose(first["probs"].sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(first["assignments"], first["probs"].argmax(1))
    np.testing.assert_allclose(np.exp(first["log_probs"]), first["probs"], rtol=1e-5, atol=1e-7)
    other = fit(data, config, tmp_path / "c", seed=1)
    assert log_rows(tmp_path / "c") != log_rows(tmp_path / "a")
    assert not np.array_equal(other["probs"], first["probs"])


@pytest.mark.parametrize("objective", ["em", "consistency"])
def test_every_objective_trains(digits, tmp_path, objective):
    outputs = fit(digits_slice(digits, 100), {**method_config("nmm", "smoke"), **TINY, "epochs": 1,
                                              "objective": objective, "k": 4}, tmp_path)
    check_outputs(outputs, 100, "nmm")
    assert outputs["probs"].shape == (100, 4)


def test_resnet18_backbone_on_colour_images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    part = Split("all", x, np.arange(8) % 2)

    class Colour(datasets.get("digits").__class__):
        n_classes = 2
    data = RunData(Colour(), part, part)
    outputs = fit(data, {**method_config("nmm", "smoke"), **TINY, "epochs": 1, "batch_size": 8, "width": 2}, tmp_path)
    assert outputs["probs"].shape == (8, 2) and outputs["embedding"].shape == (8, 16)


def test_an_interrupted_run_resumes_to_the_same_outputs(digits, tmp_path):
    data, config = digits_slice(digits, 200), {**method_config("nmm", "smoke"), **TINY}

    with pytest.raises(Killed):
        fit(data, config, tmp_path / "resumed", context=killed_after(2))
    assert [row["epoch"] for row in log_rows(tmp_path / "resumed")] == ["1", "2"]
    resumed, uninterrupted = fit(data, config, tmp_path / "resumed"), fit(data, config, tmp_path / "straight")
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "straight")
    for key in uninterrupted:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key])


def test_non_finite_loss_names_epoch_and_step(digits, tmp_path, monkeypatch):
    import methods.nmm as nmm
    terms = nmm.objective_terms

    def poisoned(a, b, config):
        result = terms(a, b, config)
        result["loss"] = result["loss"] * float("nan")
        return result
    monkeypatch.setattr(nmm, "objective_terms", poisoned)
    with pytest.raises(FloatingPointError, match="at epoch 1, step 0"):
        fit(digits_slice(digits, 100), {**method_config("nmm", "smoke"), **TINY}, tmp_path)


@pytest.mark.parametrize("key, value, message", [
    ("objective", "mi", "unknown objective 'mi'; valid: em, consistency, em\\+consistency"),
    ("backbone", "vgg", "unknown backbone 'vgg'; valid: auto, conv, resnet18, mlp"),
    ("backbone", "resnet18", "the resnet18 backbone needs images of side 32 or more"),
    ("batch_size", 1000, "batch_size must be between 2")])
def test_bad_settings_are_refused_before_training(digits, tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        fit(digits_slice(digits, 100), {**method_config("nmm", "smoke"), key: value}, tmp_path)
    assert not (tmp_path / "train_log.csv").exists()


# Registry and config --------------------------------------------------------------------

def test_registry_and_config():
    assert isinstance(methods.get("nmm"), NMMMethod)
    assert method_config("nmm", "quick")["objective"] == "em+consistency"
    objectives = {v: method_config("nmm", v)["objective"] for v in ("paper", "paper-em", "paper-consistency")}
    assert objectives == {"paper": "em+consistency", "paper-em": "em", "paper-consistency": "consistency"}
    for variant in objectives:
        paper = method_config("nmm", variant)
        assert (paper["backbone"], paper["density_constraint"], paper["batch_size"], paper["epochs"]) == ("auto", True, 512, 200)
    plain_em = method_config("nmm", "quick-t1")                     # the quick suite's unsharpened twin
    assert plain_em["target_temperature"] == 1.0
    assert {**plain_em, "target_temperature": 0.25} == method_config("nmm", "quick")
