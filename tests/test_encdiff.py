"""EncDiff + Skip Dropout + DyGA (methods/encdiff.py): a short run on sprites through every
code path (anchoring from the second epoch, mixtures in the checkpoint), the EMA of the UNet
only and the raw encoder's representation, determinism, resuming, the per-unit PCA
representation, the cached VQ first stage and its reconstruction check, bad settings, and its
place in the registry and the config."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

import datasets
import methods
from bench.config import method_config
from bench.runner import check_outputs
from datasets.base import Dataset, Split
from methods.base import RunContext, RunData
from methods.encdiff import EncDiff, EncDiffMethod, first_stage, unit_components
from methods.nets.gaussian_anchoring import GaussianAnchors
from method_runs import Killed, data_slice, killed_after, log_rows
from method_runs import fit as fit_method


@pytest.fixture(scope="module")
def sprites(prepared_data):
    dataset = datasets.get("sprites")
    return data_slice(dataset, dataset.load(prepared_data), 600, seed=0)


def fit(data, config, run_dir, seed=0, context=RunContext):
    return fit_method("encdiff", data, config, run_dir, seed, context)


def test_a_short_run_anchors_from_the_second_epoch_and_gives_every_output(sprites, tmp_path):
    config = method_config("encdiff", "smoke")
    outputs = fit(sprites, config, tmp_path / "run" / "v" / "seed0")
    rows = log_rows(tmp_path / "run" / "v" / "seed0")
    assert rows[0]["components"] == "" and float(rows[0]["anchoring_lambda"]) == 0   # no mixtures in epoch 1
    for row in rows[1:]:                                                          # fitted after epochs 1 and 2
        counts = [int(k) for k in row["components"].split()]
        assert len(counts) == config["units"] and min(counts) >= 1               # per unit
    assert all(0 <= float(row["zero_token_entries"]) <= 1 for row in rows)
    check_outputs(outputs, 600, "encdiff")
    assert outputs["embedding"].shape == (600, config["units"])
    assert outputs["samples"].shape == (config["n_samples"], 1, 32, 32) and outputs["samples"].dtype == np.uint8
    assert outputs["traversals"].shape == (config["units"], config["interchange_pairs"], 1, 32, 32)
    state = torch.load(tmp_path / "run" / "v" / "seed0" / "checkpoint.pt", weights_only=True)
    assert state["extra"]["anchors"]["means"].shape[0] == config["units"]         # the mixtures travel with it


def test_anchoring_acts_in_every_epoch_after_the_first(sprites, tmp_path, monkeypatch):
    calls = []
    anchor = GaussianAnchors.anchor
    monkeypatch.setattr(GaussianAnchors, "anchor", lambda self, tokens: calls.append(len(tokens)) or anchor(self, tokens))
    config = method_config("encdiff", "smoke")
    fit(sprites, config, tmp_path)
    assert len(calls) == config["steps_per_epoch"] * (config["epochs"] - 1)      # epochs 2 and 3, every step


def test_the_ema_holds_the_unet_only_and_the_scored_tokens_are_the_raw_encoders(sprites, tmp_path):
    config = method_config("encdiff", "smoke")
    outputs = fit(sprites, config, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    model = EncDiff((1, 32, 32), 4, config)
    unet_keys = {key for key, value in model.unet.state_dict().items() if value.is_floating_point()}
    assert set(state["extra"]["ema"]["shadow"]) == unet_keys                     # no encoder entry
    model.load_state_dict(state["model"])                                         # the raw weights of the last epoch
    raw = unit_components(EncDiffMethod.tokens(model, torch.from_numpy(sprites.score.x)))
    np.testing.assert_allclose(outputs["embedding"], raw.numpy(), rtol=1e-5, atol=1e-6)


def test_same_seed_same_numbers_and_resume(sprites, tmp_path):
    config = method_config("encdiff", "smoke")

    with pytest.raises(Killed):
        fit(sprites, config, tmp_path / "resumed", context=killed_after(2))
    resumed = fit(sprites, config, tmp_path / "resumed")
    first, second = fit(sprites, config, tmp_path / "a"), fit(sprites, config, tmp_path / "b")
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b") == log_rows(tmp_path / "resumed")
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
        np.testing.assert_array_equal(first[key], resumed[key])
    other = fit(sprites, config, tmp_path / "c", seed=1)
    assert not np.array_equal(other["embedding"], first["embedding"])


def test_unit_components_are_each_units_first_principal_component():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(200, 3, 5, generator=g) * torch.tensor([3.0, 1.0, 0.5, 0.2, 0.1])
    codes = unit_components(tokens).numpy()
    for unit in range(3):
        reference = PCA(1).fit_transform(tokens[:, unit].double().numpy())[:, 0]
        np.testing.assert_allclose(np.abs(codes[:, unit]), np.abs(reference), atol=1e-8)
        assert abs(np.corrcoef(codes[:, unit], reference)[0, 1]) > 0.999999


class TinyRGB(Dataset):
    name = "tiny_rgb"
    kind = "images"


def tiny_rgb(tmp_path) -> tuple[RunData, RunContext, RunContext]:
    images = np.random.default_rng(0).integers(0, 256, (64, 3, 16, 16), dtype=np.uint8)
    data = RunData(TinyRGB(), Split("all", images), Split("all", images))
    runs = (RunContext(tmp_path / "tiny_rgb" / "encdiff" / "a" / "seed0", 0, "cpu"),
            RunContext(tmp_path / "tiny_rgb" / "encdiff" / "b" / "seed1", 1, "cpu"))
    for run in runs:
        run.dir.mkdir(parents=True)
    return data, *runs


def test_the_vq_first_stage_is_trained_once_and_shared(tmp_path):
    data, run_a, run_b = tiny_rgb(tmp_path)
    config = method_config("encdiff", "smoke")
    trained = first_stage(data, config, run_a)
    cached = list((tmp_path / "tiny_rgb" / "encdiff" / "first_stage").glob("vq-*/autoencoder.pt"))
    assert len(cached) == 1
    loaded = first_stage(data, config, run_b)                   # another variant and seed: the same stage
    x = torch.from_numpy(data.fit.x[:4]).float() / 127.5 - 1
    torch.testing.assert_close(loaded.encode(x), trained.encode(x))
    assert loaded.decode(loaded.encode(x)).shape == (4, 3, 16, 16)
    assert run_a.notes["first_stage"] == run_b.notes["first_stage"]          # measured on the same held-out images
    assert run_a.notes["first_stage"]["held_out"] == config["vq_holdout"]


def test_a_first_stage_that_reconstructs_too_badly_stops_the_run_before_the_diffusion_stage(tmp_path):
    data, run, _ = tiny_rgb(tmp_path)
    config = {**method_config("encdiff", "smoke"), "space": "vq", "vq_max_l1_ratio": 0.01}
    with pytest.raises(RuntimeError, match=r"reconstructs 16 held-out images with L1 .*\(at most 0.01 allowed\)"):
        EncDiffMethod().fit(data, config, run)
    assert run.notes["first_stage"]["ratio"] > 0.01
    assert not (run.dir / "train_log.csv").exists()                           # no diffusion epoch


@pytest.mark.parametrize("key, value, message", [
    ("space", "latent", "unknown space 'latent'; valid: vq, pixels"),
    ("skip_dropout", 1.0, "skip_dropout and dropout must lie in"),
    ("fold", 0, "fold must be at least 1"),
    ("epochs", -1, r"epochs \(0: the untrained networks, a random-code baseline\) must be at least 0"),
    ("channel_mult", [1, 2, 2, 2, 2, 2], "not divisible by the UNet's 32"),
    ("batch_size", 1000, "larger than the 600 training images"),
    ("vq_max_l1_ratio", 0, "vq_max_l1_ratio must be positive"),
])
def test_bad_settings_are_refused_before_training(sprites, tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        fit(sprites, {**method_config("encdiff", "smoke"), key: value}, tmp_path)
    assert not (tmp_path / "train_log.csv").exists()


def test_the_vq_space_needs_rgb(sprites, tmp_path):
    with pytest.raises(ValueError, match="needs RGB images; dataset 'sprites' has 1 channel"):
        fit(sprites, {**method_config("encdiff", "smoke"), "space": "vq"}, tmp_path)


def test_registry_and_the_paper_variants():
    assert isinstance(methods.get("encdiff"), EncDiffMethod)
    switches = {variant: (method_config("encdiff", variant)["skip_dropout"], method_config("encdiff", variant)["dyga"])
                for variant in ("encdiff", "encdiff+sd", "encdiff+dyga", "encdiff+sd+dyga")}
    assert switches == {"encdiff": (0.0, False), "encdiff+sd": (0.2, False), "encdiff+dyga": (0.0, True),
                        "encdiff+sd+dyga": (0.2, True)}
    for variant in switches:                                    # DyGA's released configs, all four alike
        paper = method_config("encdiff", variant)
        assert (paper["space"], paper["units"], paper["token_dim"], paper["steps"], paper["schedule"],
                paper["beta_start"], paper["beta_end"], paper["lr"], paper["batch_size"], paper["dyga_split_bookkeeping"]
                ) == ("vq", 20, 32, 1000, "sqrt_linear", 0.0015, 0.0155, 1e-4, 512, "official")
