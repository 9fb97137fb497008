"""The EncDiff image encoder (methods/nets/encdiff_encoder.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from methods.nets.encdiff_encoder import EncDiffEncoder, UnitMLPs


def test_paper_encoder_layers_and_shapes():
    torch.manual_seed(0)
    enc = EncDiffEncoder(image_size=64)
    convs = [m for m in enc.convs if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (3, 64, 7, 1), (64, 128, 4, 2), (128, 256, 4, 2), (256, 256, 4, 2), (256, 256, 4, 2)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.convs) == 5
    assert enc.flat_dim == 4096
    assert [(m.in_features, m.out_features) for m in enc.fc if isinstance(m, nn.Linear)] == [
        (4096, 4096), (4096, 256), (256, 20)]
    assert [tuple(w.shape) for w in enc.units.weights] == [(20, 1, 256), (20, 256, 512), (20, 512, 32)]
    scalars, tokens = enc(torch.randn(2, 3, 64, 64))
    assert scalars.shape == (2, 20) and tokens.shape == (2, 20, 32)
    assert (tokens >= 0).all()  # the official per-unit MLPs end with a ReLU
    assert (scalars < 0).any()  # the scalars are not rectified


def test_narrow_encoder_on_32_pixels():
    enc = EncDiffEncoder(image_size=32, width=16, n_units=10, fc_hidden=(128,), token_hidden=(64, 64), token_dim=16)
    assert enc.flat_dim == 64 * 2 * 2
    assert EncDiffEncoder(image_size=32).flat_dim == 1024
    scalars, tokens = enc(torch.randn(4, 3, 32, 32))
    assert scalars.shape == (4, 10) and tokens.shape == (4, 10, 16)
    with pytest.raises(ValueError):
        EncDiffEncoder(image_size=40)


@pytest.mark.parametrize("final_relu", [True, False])
def test_batched_unit_mlps_equal_the_per_unit_loop(final_relu):
    torch.manual_seed(0)
    mlps = UnitMLPs(5, dims=(1, 8, 12, 3), final_relu=final_relu)
    s = torch.randn(7, 5)
    ref = []
    for u in range(5):  # the official form: one nn.Sequential of Linears per unit
        layers = []
        for w, b in zip(mlps.weights, mlps.biases):
            lin = nn.Linear(*w.shape[1:])
            with torch.no_grad():
                lin.weight.copy_(w[u].T)
                lin.bias.copy_(b[u])
            layers += [lin, nn.ReLU()]
        seq = nn.Sequential(*(layers if final_relu else layers[:-1]))
        ref.append(seq(s[:, u:u + 1]))
    assert torch.allclose(mlps(s), torch.stack(ref, dim=1), atol=1e-6)
    assert (mlps(s) < 0).any() != final_relu


def test_units_are_independent():
    torch.manual_seed(0)
    mlps = UnitMLPs(4)
    s = torch.randn(3, 4)
    s2 = s.clone()
    s2[:, 2] += 1.0
    diff = (mlps(s) - mlps(s2)).abs().sum(dim=(0, 2))
    assert diff[2] > 0 and torch.all(diff[[0, 1, 3]] == 0)


def test_gradients_reach_every_parameter_and_seeded_init():
    torch.manual_seed(0)
    enc = EncDiffEncoder(image_size=32, width=8, fc_hidden=(64,), token_hidden=(16, 16), token_final_relu=False)
    enc(torch.randn(4, 3, 32, 32))[1].square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    torch.manual_seed(0)
    again = EncDiffEncoder(image_size=32, width=8, fc_hidden=(64,), token_hidden=(16, 16), token_final_relu=False)
    assert all(torch.equal(a, b) for a, b in zip(enc.parameters(), again.parameters()))  # (BN stats moved)
