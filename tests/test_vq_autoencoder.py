"""The VQ first stage (methods/nets/vq_autoencoder.py): the paper shapes (64 -> 16), the
straight-through gradient, the codebook loss, training (usage of the codebook, a falling
reconstruction loss, the scale factor, LDM's scaled learning rate), the reconstruction error,
resuming, and refused settings."""

import numpy as np
import pytest
import torch

from methods.base import RunContext
from bench.config import method_config
from methods.nets.vq_autoencoder import (GENERATOR_STREAM, KEYS, Codebook, VQAutoencoder, latent_scale_factor, learning_rate,
                                         reconstruction_error, settings, to_unit_range, train_vq_autoencoder)
from method_runs import Killed, killed_after, log_rows

PAPER = {"codes": 2048, "channels": 32, "channel_mult": [1, 2, 4], "res_blocks": 2, "latent_channels": 3,
         "mid_attention": True, "commitment": 0.25}
TINY = {**PAPER, "channels": 8, "channel_mult": [1, 2], "res_blocks": 1, "codes": 64, "base_lr": 0.00025,
        "accumulate": 1, "batch_size": 8, "epochs": 6, "checkpoint_every": 2}


def vq_config(**overrides) -> dict:
    """A method's config holding the stage's settings under the vq_ prefix."""
    return {"lr": 1.0, **{f"vq_{key}": value for key, value in {**TINY, **overrides}.items()}}


def squares(n: int, side: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 colour images: a bright square of a random colour at a random place on grey."""
    rng = np.random.default_rng(seed)
    images = np.full((n, 3, side, side), 60, dtype=np.uint8)
    for image in images:
        x, y = rng.integers(0, side - side // 4, size=2)
        image[:, y:y + side // 4, x:x + side // 4] = rng.integers(120, 256, size=3)[:, None, None]
    return images


def test_paper_network_maps_64_to_16_by_16_by_3_and_back():
    torch.manual_seed(0)
    model = VQAutoencoder(PAPER).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        latent = model.encode(x)
        assert latent.shape == (2, 3, 16, 16)
        assert model.decode(latent).shape == (2, 3, 64, 64)
        reconstruction, loss, codes = model(x)
    assert reconstruction.shape == x.shape and loss.ndim == 0 and codes.shape == (2, 16, 16)
    assert model.codebook.embedding.weight.shape == (2048, 3)
    assert sum(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 32 for m in model.modules()) > 10
    without = VQAutoencoder({**PAPER, "mid_attention": False})
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in model.parameters())


def test_quantisation_picks_the_nearest_code_and_passes_the_gradient_straight_through():
    torch.manual_seed(0)
    codebook = Codebook(16, 3, 0.25)
    h = torch.randn(2, 3, 4, 4, requires_grad=True)
    quantised, loss, index = codebook(h)
    flat = h.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = torch.cdist(flat, codebook.embedding.weight.detach()).argmin(1)
    assert torch.equal(index.flatten(), nearest)
    torch.testing.assert_close(quantised.detach().permute(0, 2, 3, 1).reshape(-1, 3),
                               codebook.embedding.weight.detach()[nearest])
    weights = torch.randn_like(h)
    (quantised * weights).sum().backward()
    torch.testing.assert_close(h.grad, weights)                                   # identity through the quantiser
    # codebook loss: |sg(h) - e|^2 moves the codes, 0.25 |h - sg(e)|^2 the encoder output
    e = codebook.embedding.weight.detach()[nearest]
    torch.testing.assert_close(loss, 1.25 * ((flat - e) ** 2).mean())
    h.grad = None
    loss.backward()
    torch.testing.assert_close(h.grad.permute(0, 2, 3, 1).reshape(-1, 3), 0.25 * 2 * (flat - e) / flat.numel())


def test_reconstruction_gradient_reaches_the_encoder_through_the_quantiser():
    torch.manual_seed(0)
    model = VQAutoencoder(TINY)
    x = to_unit_range(torch.from_numpy(squares(4)))
    reconstruction = model.decode(model.encode(x))
    (reconstruction - x).abs().mean().backward()
    first_conv = model.encoder[0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.codebook.embedding.weight.grad is None or model.codebook.embedding.weight.grad.abs().sum() == 0


def test_training_uses_many_codes_lowers_the_loss_and_sets_the_scale_factor(tmp_path):
    images = squares(64)
    model = train_vq_autoencoder(images, vq_config(), RunContext(tmp_path, 0, "cpu"))
    rows = log_rows(tmp_path)
    assert [row["epoch"] for row in rows] == [str(e) for e in range(1, 7)]
    assert float(rows[-1]["l1"]) < 0.6 * float(rows[0]["l1"])
    with torch.no_grad():
        _, _, codes = model(to_unit_range(torch.from_numpy(images)))
    assert codes.unique().numel() > 1 and float(rows[-1]["codes_used"]) > 1
    assert not model.training

    # the scale factor: 1 / std of the latents of the first batch of a fresh permutation drawn by
    # the stage's generator after training (which drew one permutation per epoch before it)
    generator = torch.Generator().manual_seed(int(RunContext(tmp_path, 0).rng(GENERATOR_STREAM).integers(2 ** 62)))
    for _ in range(6):
        torch.randperm(64, generator=generator)
    first = torch.from_numpy(images)[torch.randperm(64, generator=generator)[:8]]
    with torch.no_grad():
        expected = 1 / model.encode(to_unit_range(first)).flatten().std()
    assert model.scale_factor.item() == pytest.approx(expected.item(), rel=1e-6)
    assert latent_scale_factor(model, first) == pytest.approx(expected.item(), rel=1e-6)
    assert "scale_factor" in model.state_dict()


def test_same_seed_same_model_and_an_interrupted_run_resumes_to_it(tmp_path):
    images, config = squares(32), vq_config(epochs=4, batch_size=8, checkpoint_every=1)
    for directory in ("straight", "resumed", "nested"):
        (tmp_path / directory).mkdir()
    straight = train_vq_autoencoder(images, config, RunContext(tmp_path / "straight", 0, "cpu"))

    with pytest.raises(Killed):
        train_vq_autoencoder(images, config, killed_after(2)(tmp_path / "resumed", 0, "cpu"))
    resumed = train_vq_autoencoder(images, config, RunContext(tmp_path / "resumed", 0, "cpu"))
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "straight")
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key

    nested = {}                                                       # inside a method's own checkpoint
    model = train_vq_autoencoder(images, config, RunContext(tmp_path / "nested", 0, "cpu"), state=None,
                                 save=lambda state: nested.update(vq=state))
    assert nested["vq"]["epoch"] == 4 and not (tmp_path / "nested" / "checkpoint.pt").exists()
    assert torch.equal(model.scale_factor, straight.scale_factor)


def test_bad_settings_are_refused_before_training(tmp_path):
    run = RunContext(tmp_path, 0, "cpu")
    config = vq_config()
    del config["vq_codes"]
    with pytest.raises(ValueError, match="lacks vq_codes"):
        train_vq_autoencoder(squares(16), config, run)
    with pytest.raises(ValueError, match="vq_res_blocks must be at least 1"):
        train_vq_autoencoder(squares(16), vq_config(res_blocks=0), run)
    with pytest.raises(ValueError, match="needs uint8 images N x 3 x H x W"):
        train_vq_autoencoder(squares(16)[:, :1], vq_config(), run)
    with pytest.raises(ValueError, match="not divisible by 2"):
        train_vq_autoencoder(squares(16, side=15), vq_config(), run)
    with pytest.raises(ValueError, match="vq_accumulate x vq_batch_size 8 is larger than the 4"):
        train_vq_autoencoder(squares(4), vq_config(), run)
    assert not (tmp_path / "train_log.csv").exists()
    assert set(KEYS) <= {key[3:] for key in vq_config()}


def test_the_stage_trains_at_ldms_scaled_rate_on_accumulated_batches(tmp_path, monkeypatch):
    seen = []
    forward = VQAutoencoder.forward
    monkeypatch.setattr(VQAutoencoder, "forward", lambda self, x: seen.append(len(x)) or forward(self, x))
    train_vq_autoencoder(squares(32), vq_config(base_lr=1e-4, accumulate=2, batch_size=4, epochs=1),
                         RunContext(tmp_path, 0, "cpu"))
    assert float(log_rows(tmp_path)[0]["lr"]) == pytest.approx(1e-4 * 2 * 4)      # base x accumulate x batch
    assert seen == [8] * 4                                                         # 2 x 4 images a step
    paper = settings(method_config("encdiff", "encdiff+sd+dyga"), "vq_")
    assert learning_rate(paper) == pytest.approx(4.5e-6 * 2 * 128)                 # 1.152e-3, LDM main.py's


def test_the_reconstruction_error_is_the_mean_absolute_error_beside_the_mean_images():
    torch.manual_seed(0)
    model = VQAutoencoder(TINY).eval()
    images = torch.from_numpy(squares(10))
    error = reconstruction_error(model, images, chunk=3)
    x = to_unit_range(images)
    with torch.no_grad():
        expected = (model(x)[0] - x).abs().mean().item()
    baseline = (x - x.mean(0)).abs().mean().item()
    assert error["l1"] == pytest.approx(expected, rel=1e-5)
    assert error["mean_image_l1"] == pytest.approx(baseline, rel=1e-5)
    assert error["ratio"] == pytest.approx(expected / baseline, rel=1e-5)
