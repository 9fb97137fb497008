"""Generation metrics: the Fréchet distance against independent formulas, FID/KID refusals
(offline, no network), the digits-classifier FD, and sample grids."""
import time

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from sklearn.datasets import load_digits

from evaluation import generation as gen


def random_gaussian(rng, dim):
    a = rng.normal(size=(dim, dim))
    return rng.normal(size=dim), a @ a.T / dim + 0.1 * np.eye(dim)


@pytest.mark.parametrize("seed", range(3))
def test_frechet_distance_matches_the_eigenvalue_formula(seed):
    """tr((S1 S2)^½) = Σ sqrt(eigenvalues of S1^½ S2 S1^½), a symmetric PSD matrix."""
    rng = np.random.default_rng(seed)
    (mu1, s1), (mu2, s2) = random_gaussian(rng, 12), random_gaussian(rng, 12)
    root1 = scipy.linalg.sqrtm(s1).real
    trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_root
    assert gen.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2, v1, v2 = rng.normal(size=6), rng.normal(size=6), rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert gen.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_feature_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    features = np.random.default_rng(0).normal(size=(3000, 16))
    assert gen.feature_frechet_distance(features, features) == pytest.approx(0, abs=1e-8)
    # a shift moves only the means: the distance is |shift|² exactly
    assert gen.feature_frechet_distance(features, features + 0.5) == pytest.approx(16 * 0.25, rel=1e-8)
    assert gen.feature_frechet_distance(features, features + 1.0) == pytest.approx(16.0, rel=1e-8)


# ---------------------------------------------------------------- FID and KID

@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache, and a download function that fails the test if it is called."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download the Inception weights")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path


def grey_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)


def test_fid_without_inception_weights_is_unavailable_at_once_with_the_reason(offline_hub):
    images = grey_images(gen.MIN_SAMPLES)
    start = time.perf_counter()
    with pytest.raises(gen.MetricUnavailable, match="Inception weights not found.*weights-inception"):
        gen.fid_kid(images, images)
    with pytest.raises(gen.MetricUnavailable, match="not found at .*missing.pth"):
        gen.fid_kid(images, images, weights=offline_hub / "missing.pth")
    assert time.perf_counter() - start < 30


def test_fid_refuses_fewer_than_2048_samples(offline_hub):
    weights = offline_hub / "weights.pth"
    weights.write_bytes(b"never read: the count is checked first")
    with pytest.raises(gen.MetricUnavailable, match="only 2047 generated images.*at least 2048"):
        gen.fid_kid(grey_images(2047), grey_images(2048), weights=weights)
    with pytest.raises(gen.MetricUnavailable, match="only 100 reference images"):
        gen.fid_kid(grey_images(2048), grey_images(100), weights=weights)


def test_fid_and_kid_specs_name_the_protocol():
    version = __import__("importlib.metadata").metadata.version("torch-fidelity")
    assert gen.fid_kid_spec("fid", 10000, "mnist", "test") == \
        f"fid[torch-fidelity={version},inception-v3-compat,n=10000,ref=mnist-test]"
    assert gen.fid_kid_spec("kid", 50000, "cifar10", "train") == \
        f"kid[torch-fidelity={version},inception-v3-compat,subsets=100x1000,n=50000,ref=cifar10-train]"


# ---------------------------------------------------------------- FD[digits-classifier]

@pytest.fixture(scope="module")
def digits():
    """sklearn's bundled digits as 28×28 uint8 images (as the digits dataset builds them)."""
    bunch = load_digits()
    resized = np.stack([np.asarray(Image.fromarray(image.astype(np.float32) * (255 / 16), mode="F")
                                   .resize((28, 28), Image.BILINEAR)) for image in bunch.images])
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)[:, None], bunch.target


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    cache = tmp_path_factory.mktemp("classifier") / "digits.pt"
    return gen.classifier(*digits, cache), cache


def test_classifier_fd_is_zero_for_identical_sets_and_larger_for_shifted_or_noisy_ones(digits, trained):
    images, model = digits[0], trained[0]
    assert gen.classifier_fd(model, images, images) == pytest.approx(0, abs=1e-6)
    halves = gen.classifier_fd(model, images[::2], images[1::2])   # sampling noise between two real sets
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 80, images.shape), 0, 255).astype(np.uint8)
    shifted = np.roll(images, 4, axis=3)
    assert gen.classifier_fd(model, noisy, images) > 3 * halves
    assert gen.classifier_fd(model, shifted, images) > 3 * halves


def test_classifier_is_deterministic_and_loaded_from_its_cache(digits, trained, tmp_path):
    model, cache = trained
    again = gen.classifier(*digits, tmp_path / "again.pt")
    loaded = gen.classifier(*digits, cache)
    for name, weights in model.state_dict().items():
        assert torch.equal(weights, again.state_dict()[name]), name
        assert torch.equal(weights, loaded.state_dict()[name]), name
    assert gen.classifier_features(model, digits[0][:10]).shape == (10, 128)


def test_classifier_fd_spec_is_never_fid():
    spec = gen.classifier_fd_spec("digits", 1797, "digits", "all")
    assert spec == "fd[digits-classifier,epochs=5,seed=0,n=1797,ref=digits-all]"


# ---------------------------------------------------------------- figures

@pytest.mark.parametrize("channels", [1, 3])
def test_sample_grid_writes_every_image_in_place(tmp_path, channels):
    images = np.random.default_rng(0).integers(0, 256, size=(7, channels, 5, 6), dtype=np.uint8)
    gen.sample_grid(images, tmp_path / "grid.png", nrow=3)
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[:2] == (3 * 7 + 2, 3 * 8 + 2)
    image_5 = grid[2 + 7:2 + 7 + 5, 2 + 2 * 8:2 + 2 * 8 + 6]   # row 1, column 2
    assert np.array_equal(image_5.reshape(5, 6, -1), images[5].transpose(1, 2, 0))


def test_images_that_are_not_uint8_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint8 N×C×H×W"):
        gen.sample_grid(np.zeros((2, 1, 4, 4)), tmp_path / "grid.png")
