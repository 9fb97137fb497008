"""The generated offline datasets (sprites, manifolds), the registry, and the parts of the
dataset contract that every dataset relies on (streamed arrays, atomic publishing)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import datasets
from datasets import manifolds, sprites
from datasets.base import Dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def sprite_split(data_dir):
    dataset = datasets.get("sprites")
    dataset.prepare(data_dir)
    return dataset.load(data_dir)


# Sprites ---------------------------------------------------------------------------------

def test_sprites_hold_every_factor_combination_once_in_factor_order(sprite_split):
    sizes = datasets.get("sprites").factor_sizes
    assert sprite_split.x.shape == (math.prod(sizes), 1, 32, 32) and sprite_split.x.dtype == np.uint8
    np.testing.assert_array_equal(np.ravel_multi_index(sprite_split.factors.T, sizes), np.arange(len(sprite_split)))


def test_sprites_rerender_exactly_from_their_factors(sprite_split):
    sample = np.random.default_rng(0).choice(len(sprite_split), 2000, replace=False)
    for i in sample:
        np.testing.assert_array_equal(sprites.render(*sprite_split.factors[i]), sprite_split.x[i])


def test_sprites_factors_change_the_picture(sprite_split):
    """Each factor moves pixels: the rasteriser does not ignore any of them."""
    base = sprites.render(2, 5, 1, 3, 3)
    for factor in range(5):
        changed = [2, 5, 1, 3, 3]
        changed[factor] = (changed[factor] + 1) % sprites.FACTOR_SIZES[factor]
        assert (sprites.render(*changed) != base).sum() > 3, sprites.FACTOR_NAMES[factor]
    assert 0 < base.mean() < 128 and base.max() == 255 and len(np.unique(base)) > 2   # anti-aliased edge


def test_sprites_are_identical_across_preparations(sprite_split, data_dir, tmp_path):
    dataset = datasets.get("sprites")
    dataset.prepare(tmp_path)
    assert dataset.manifest(tmp_path)["digest"] == dataset.manifest(data_dir)["digest"]


def test_factor_space_of_sprites_returns_the_images_of_sampled_factors(sprite_split):
    space = datasets.get("sprites").factor_space(sprite_split)
    assert space.sizes == sprites.FACTOR_SIZES and space.names == sprites.FACTOR_NAMES
    factors = space.sample_factors(16, np.random.default_rng(1))
    images = space.images_of(factors, np.random.default_rng(2))
    for row, image in zip(factors, images):
        np.testing.assert_array_equal(image, sprites.render(*row))


def test_factor_space_needs_factors(data_dir):
    blobs = datasets.get("blobs")
    blobs.prepare(data_dir)
    with pytest.raises(ValueError, match="no ground-truth factors"):
        blobs.factor_space(blobs.load(data_dir))


# Manifolds -------------------------------------------------------------------------------

NAMES = ("circle", "sphere", "torus", "swiss_roll")


@pytest.mark.parametrize("name", NAMES)
def test_manifolds_are_deterministic_points_with_recorded_topology(name, data_dir):
    dataset = datasets.get(name)
    dataset.prepare(data_dir)
    split = dataset.load(data_dir)
    assert split.x.shape == (manifolds.N_POINTS, manifolds.AMBIENT_DIM) and split.x.dtype == np.float32
    np.testing.assert_array_equal(dataset.build(None)["all"]["x"], split.x)
    manifest = dataset.manifest(data_dir)
    assert manifest["kind"] == "points" and manifest["intrinsic_dim"] == dataset.intrinsic_dim
    assert manifest["topology"] and manifest["betti_numbers"] == list(dataset.betti_numbers)


def recovered(name):
    """The points mapped back to the manifold's own coordinates, and the residual off the embedding."""
    dataset = datasets.get(name)
    x = dataset.build(None)["all"]["x"].astype(np.float64)
    k = {"circle": 2}.get(name, 3)
    embedding = dataset.embedding(k)
    np.testing.assert_allclose(embedding.T @ embedding, np.eye(k), atol=1e-12)
    inside = x @ embedding
    return inside, x - inside @ embedding.T


@pytest.mark.parametrize("name", NAMES)
def test_points_lie_in_the_embedding_up_to_the_noise(name):
    _, residual = recovered(name)
    off_dims = manifolds.AMBIENT_DIM - {"circle": 2}.get(name, 3)
    assert np.sqrt((residual ** 2).sum() / (len(residual) * off_dims)) == pytest.approx(manifolds.NOISE, rel=0.05)


def test_circle_and_sphere_have_unit_radius():
    for name in ("circle", "sphere"):
        radius = np.linalg.norm(recovered(name)[0], axis=1)
        assert np.abs(radius - 1).max() < 6 * manifolds.NOISE
        clean = datasets.get(name).sample(500, np.random.default_rng(0))
        np.testing.assert_allclose(np.linalg.norm(clean, axis=1), 1, atol=1e-12)


def test_circle_covers_every_angle():
    points = recovered("circle")[0]
    angles = np.sort(np.arctan2(points[:, 1], points[:, 0]))
    assert np.diff(np.concatenate([angles, [angles[0] + 2 * np.pi]])).max() < 0.05     # no gap: a closed loop


def test_torus_points_keep_their_distance_from_the_core_circle():
    torus = datasets.get("torus")
    p = recovered("torus")[0]
    tube = np.hypot(np.hypot(p[:, 0], p[:, 1]) - torus.major, p[:, 2])
    assert np.abs(tube - torus.minor).max() < 6 * manifolds.NOISE


def test_swiss_roll_is_a_rolled_sheet():
    clean = datasets.get("swiss_roll").sample(500, np.random.default_rng(0))
    t = 10 * np.hypot(clean[:, 0], clean[:, 2])          # make_swiss_roll: (t cos t, height, t sin t)
    np.testing.assert_allclose(clean[:, 0], t * np.cos(t) / 10, atol=1e-9)
    assert 1.5 * np.pi - 1e-9 <= t.min() and t.max() <= 4.5 * np.pi + 1e-9


# Registry and contract -------------------------------------------------------------------

def test_every_paper_dataset_is_registered_and_offline_ones_never_take_their_names():
    for name in datasets.PAPER_DATASETS:
        assert datasets.get(name).name == name
    offline = {"digits", "blobs", "sprites", "mnist10k", *NAMES}
    assert offline <= set(datasets.DATASETS) and not offline & set(datasets.PAPER_DATASETS)
    for name, dataset in ((n, datasets.get(n)) for n in datasets.DATASETS):
        assert len(dataset.factor_names) == len(dataset.factor_sizes), name
    with pytest.raises(KeyError, match="unknown dataset 'dsprite'"):
        datasets.get("dsprite")


class Streamed(Dataset):
    """Streams its images in blocks; `rows` is how many it actually writes."""
    name, rows = "streamed", 10

    def write(self, staging):
        with staging.writer("all", "x", (10, 1, 4, 4), np.uint8) as out:
            for start in range(0, self.rows, 3):
                out.write(np.full((min(3, self.rows - start), 1, 4, 4), start, np.uint8))


def test_streamed_arrays_are_published_with_their_manifest(tmp_path):
    dataset = Streamed()
    dataset.prepare(tmp_path)
    split = dataset.load(tmp_path)
    assert isinstance(split.x, np.memmap)
    np.testing.assert_array_equal(split.x[:, 0, 0, 0], [0, 0, 0, 3, 3, 3, 6, 6, 6, 9])
    assert dataset.manifest(tmp_path)["files"]["all.x.npy"]["shape"] == [10, 1, 4, 4]


def test_a_short_stream_publishes_nothing(tmp_path):
    dataset = Streamed()
    dataset.rows = 7
    with pytest.raises(ValueError, match="7 of the declared 10 rows"):
        dataset.prepare(tmp_path)
    assert list(tmp_path.iterdir()) == []            # no dataset directory, no temporary left behind


def test_arrays_of_the_wrong_type_are_refused(tmp_path):
    class Floats(Dataset):
        name = "floats"

        def build(self, workdir):
            return {"all": {"x": np.zeros((2, 1, 4, 4), np.float32)}}

    with pytest.raises(ValueError, match="expected dtype uint8"):
        Floats().prepare(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_labels_beyond_the_number_of_classes_are_refused(tmp_path):
    class TwoClasses(Dataset):
        name, n_classes = "two_classes", 2

        def build(self, workdir):
            return {"all": {"x": np.zeros((3, 1, 4, 4), np.uint8), "labels": np.array([0, 1, 2])}}

    with pytest.raises(ValueError, match=r"outside \[0, bound\) for bounds \[2\]"):
        TwoClasses().prepare(tmp_path)
