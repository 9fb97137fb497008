"""The EncDiff denoiser UNet (methods/nets/attention_unet.py) and its Skip Dropout."""
from __future__ import annotations

import math

import pytest
import torch

from methods.nets.attention_unet import Attention, AttentionUNet, SkipDropout, timestep_embedding

PAPER = dict(in_channels=3, out_channels=3, model_channels=64, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
             attention_resolutions=(1, 2, 4), context_dim=32, num_heads=8, dropout=0.1,
             use_scale_shift_norm=True, resblock_updown=True, skip_dropout=0.2, skip_dropout_min_resolution=8)
NARROW = dict(in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
              attention_resolutions=(2, 4), context_dim=32, num_heads=4, dropout=0.1, skip_dropout=0.2)
TINY = dict(NARROW, model_channels=16, channel_mult=(1, 2), num_heads=2)  # cheapest model for behaviour tests


def inputs(batch, size, seed=0, units=20, dim=32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 1000, (batch,), generator=g),
            torch.randn(batch, units, dim, generator=g))


def perturb_zero_inits(model, seed=1):
    """Give the zero-initialised layers small random weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("cfg,size", [(PAPER, 16), (NARROW, 32), (dict(NARROW, model_channels=16), 32)])
def test_shapes_and_zero_output_at_init(cfg, size):
    torch.manual_seed(0)
    model = AttentionUNet(**cfg)
    x, t, c = inputs(2, size)
    out = model(x, t, c)
    assert out.shape == (2, 3, size, size)
    assert torch.all(out == 0)  # zero-initialised output conv
    perturb_zero_inits(model)
    assert model(x, t, c).abs().sum() > 0


def test_out_channels_and_non_square_context():
    model = AttentionUNet(**dict(TINY, in_channels=3, out_channels=6, context_dim=8))
    x, t, _ = inputs(3, 16)
    assert model(x, t, torch.randn(3, 5, 8)).shape == (3, 6, 16, 16)


def test_context_reaches_output_after_training_steps():
    torch.manual_seed(0)
    model = AttentionUNet(**dict(TINY, dropout=0.0, skip_dropout=0.0))
    x, t, c = inputs(4, 16)
    c.requires_grad_(True)
    model(x, t, c).abs().mean().backward()
    assert torch.all(c.grad == 0)  # at init every path from the context ends in a zeroed layer
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):  # step 1 moves the output conv; later steps the transformers' proj_out
        opt.zero_grad()
        c.grad = None
        model(x, t, c).sub(x).abs().mean().backward()
        opt.step()
    c.grad = None
    model(x, t, c).sub(x).abs().mean().backward()
    assert c.grad.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(model(x, t, c), model(x, t, torch.randn_like(c)))


def test_deterministic_under_manual_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = perturb_zero_inits(AttentionUNet(**TINY)).train()  # dropout and skip dropout active
        x, t, c = inputs(2, 16)
        outs.append(model(x, t, c))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    assert not torch.equal(outs[0], model(x, t, c))  # ...and the draws do matter


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0, 10]), 8)
    assert e.shape == (2, 8)
    assert torch.equal(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos then sin of 0
    assert torch.allclose(e[1, 0], torch.cos(torch.tensor(10.0)))
    assert timestep_embedding(torch.tensor([3]), 7).shape == (1, 7)


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = Attention(16, heads=4, dim_head=4, context_dim=6)
    x, c = torch.randn(2, 9, 16), torch.randn(2, 5, 6)
    q, k, v = (f(z).view(2, -1, 4, 4).transpose(1, 2) for f, z in ((attn.q, x), (attn.k, c), (attn.v, c)))
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)
    ref = attn.out((w @ v).transpose(1, 2).reshape(2, 9, 16))
    assert torch.allclose(attn(x, c), ref, atol=1e-5)


# ---------------------------------------------------------------- Skip Dropout

def test_skip_dropout_identity_in_eval():
    sd = SkipDropout(0.2).eval()
    x = torch.randn(3, 4, 5, 5)
    assert torch.equal(sd(x), x)


def test_skip_dropout_zeroes_whole_channels_and_keeps_expectation():
    torch.manual_seed(0)
    p, n = 0.2, 20000
    base = torch.rand(1, 8, 2, 2) + 0.5  # no zeros, so a zero means dropped
    y = SkipDropout(p).train()(base.expand(n, -1, -1, -1))
    dropped = (y == 0)
    kept = torch.isclose(y, base / (1 - p))
    assert torch.all(dropped | kept)
    per_channel = dropped.flatten(2)
    assert torch.all(per_channel.all(-1) | ~per_channel.any(-1))  # all of a channel, or none of it
    assert abs(dropped.float().mean().item() - p) < 0.01  # binomial sd of the rate ~0.001
    sem = base * math.sqrt(p / (1 - p)) / math.sqrt(n)
    assert torch.all((y.mean(0, keepdim=True) - base).abs() < 5 * sem)
    assert not torch.equal(y[0], y[1]) or not torch.equal(y[1], y[2])  # masks differ per sample


def test_skip_dropout_generator_and_bounds():
    x = torch.randn(4, 6, 3, 3)
    a = SkipDropout(0.5, generator=torch.Generator().manual_seed(7))(x)
    b = SkipDropout(0.5, generator=torch.Generator().manual_seed(7))(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        SkipDropout(1.0)


def skip_widths(model, x, t, c):
    """Widths of every skip the decoder consumes, and of those passed through Skip Dropout."""
    all_w, dropped_w = [], []
    hooks = [b.register_forward_hook(lambda m, i, o: all_w.append(o.shape[-1])) for b in model.input_blocks]
    if model.skip_dropout is not None:
        hooks.append(model.skip_dropout.register_forward_hook(lambda m, i, o: dropped_w.append(i[0].shape[-1])))
    model(x, t, c)
    for h in hooks:
        h.remove()
    return all_w, dropped_w


def test_skip_dropout_on_the_16_and_8_wide_skips_of_the_paper_model():
    model = AttentionUNet(**PAPER).train()
    all_w, dropped_w = skip_widths(model, *inputs(2, 16))
    assert sorted(all_w) == [2] * 3 + [4] * 3 + [8] * 3 + [16] * 3
    assert sorted(dropped_w) == [8] * 3 + [16] * 3
    # The official rule, "width not in attention_resolutions", picks the same skips here.
    assert sorted(dropped_w) == sorted(w for w in all_w if w not in PAPER["attention_resolutions"])
    model.eval()
    x, t, c = inputs(2, 16)
    perturb_zero_inits(model)
    assert torch.equal(model(x, t, c), model(x, t, c))  # eval mode draws nothing


def test_skip_dropout_min_resolution_and_narrow_model():
    all_w, dropped_w = skip_widths(AttentionUNet(**NARROW).train(), *inputs(2, 32))
    assert sorted(dropped_w) == sorted(all_w) == [8, 8, 16, 16, 32, 32]
    model = AttentionUNet(**dict(NARROW, skip_dropout_min_resolution=16)).train()
    assert sorted(skip_widths(model, *inputs(2, 32))[1]) == [16, 16, 32, 32]


def test_skip_dropout_changes_training_forward_only():
    torch.manual_seed(0)
    plain = perturb_zero_inits(AttentionUNet(**dict(TINY, dropout=0.0, skip_dropout=0.0)))
    sd = AttentionUNet(**dict(TINY, dropout=0.0, skip_dropout=0.5))
    sd.load_state_dict(plain.state_dict())  # Skip Dropout has no parameters
    x, t, c = inputs(2, 16)
    plain.train(), sd.train()
    assert torch.equal(plain(x, t, c), plain(x, t, c))  # nothing random left in the plain model
    assert not torch.equal(sd(x, t, c), plain(x, t, c))
    sd.eval()
    assert torch.allclose(sd(x, t, c), plain(x, t, c))


def test_skip_dropout_off_means_no_module():
    model = AttentionUNet(**dict(PAPER, skip_dropout=0.0))
    assert model.skip_dropout is None
    assert not any(isinstance(m, SkipDropout) for m in model.modules())
    assert not model.drops_skip(16)
    on = AttentionUNet(**PAPER)
    assert on.drops_skip(16) and on.drops_skip(8) and not on.drops_skip(4)


def test_narrow_widths_get_fewer_groups():
    model = AttentionUNet(**dict(NARROW, model_channels=16))
    groups = {m.num_channels: m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups[48] == 16 and groups[16] == 16 and groups[32] == 32
    assert all(c % g == 0 for c, g in groups.items())
