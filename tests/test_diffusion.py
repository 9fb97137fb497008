"""The shared diffusion pieces (methods/nets/diffusion.py): schedules against direct
products, the forward process's moments, both samplers against an exact denoiser, guidance,
and the moving average of weights."""
import pytest
import torch
from torch import nn

from methods.nets.diffusion import EMA, NoiseSchedule, ancestral_sample, ddim_sample, guided


def test_alpha_bar_is_the_running_product_of_one_minus_beta():
    schedule = NoiseSchedule.linear(400, 1e-4, 0.02)
    betas = [1e-4 + (0.02 - 1e-4) * i / 399 for i in range(400)]
    product = 1.0
    for t in (0, 1, 57, 399):
        product = 1.0
        for beta in betas[:t + 1]:
            product *= 1 - beta
        assert schedule.alpha_bar[t].item() == pytest.approx(product, rel=1e-9)
    assert schedule.betas[0].item() == pytest.approx(1e-4) and schedule.betas[-1].item() == pytest.approx(0.02)


def test_sqrt_linear_schedule_is_linear_in_sqrt_beta():
    schedule = NoiseSchedule.named("sqrt_linear", 1000, 0.0015, 0.0155)
    root = schedule.betas.sqrt()
    torch.testing.assert_close(root[1:] - root[:-1], torch.full((999,), (0.0155 ** 0.5 - 0.0015 ** 0.5) / 999,
                                                                  dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown noise schedule 'cosine'; valid: linear, sqrt_linear"):
        NoiseSchedule.named("cosine", 10, 0.1, 0.2)
    with pytest.raises(ValueError, match=r"values in \(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))


def test_noised_images_have_the_forward_process_moments():
    schedule = NoiseSchedule.linear(100, 1e-4, 0.02)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 0.7)
    t = torch.full((20000,), 60)
    x_t = schedule.add_noise(x0, t, torch.randn(x0.shape, generator=g))
    a = schedule.alpha_bar[60].item()
    assert x_t.mean().item() == pytest.approx(a ** 0.5 * 0.7, abs=0.01)
    assert x_t.var().item() == pytest.approx(1 - a, rel=0.03)


def exact_denoiser(schedule, point):
    """The noise that took the single data point `point` to x_t: a perfect eps-predictor."""
    def eps(x, t):
        a = schedule.at(schedule.alpha_bar, t, x)
        return (x - a.sqrt() * point) / (1 - a).sqrt()
    return eps


@pytest.mark.parametrize("sample", [
    lambda eps, schedule, g: ancestral_sample(eps, schedule, (6, 1, 4, 4), g),
    lambda eps, schedule, g: ddim_sample(eps, schedule, (6, 1, 4, 4), g, steps=20),
    lambda eps, schedule, g: ddim_sample(eps, schedule, (6, 1, 4, 4), g, steps=20, eta=1.0),
], ids=["ancestral", "ddim", "ddim-eta1"])
def test_samplers_recover_the_data_point_under_an_exact_denoiser(sample):
    schedule = NoiseSchedule.linear(50, 1e-4, 0.2)
    point = torch.linspace(0, 1, 16).view(1, 1, 4, 4)
    x = sample(exact_denoiser(schedule, point), schedule, torch.Generator().manual_seed(1))
    assert x.shape == (6, 1, 4, 4)
    torch.testing.assert_close(x, point.expand(6, 1, 4, 4), atol=1e-3, rtol=0)


def test_samplers_are_deterministic_under_the_generator_and_ddim_checks_steps():
    schedule = NoiseSchedule.linear(30, 1e-4, 0.1)
    eps = lambda x, t: 0.1 * x  # noqa: E731
    first = ancestral_sample(eps, schedule, (3, 2), torch.Generator().manual_seed(5))
    second = ancestral_sample(eps, schedule, (3, 2), torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    assert not torch.equal(first, ancestral_sample(eps, schedule, (3, 2), torch.Generator().manual_seed(6)))
    with pytest.raises(ValueError, match="steps must be in 1..30"):
        ddim_sample(eps, schedule, (3, 2), torch.Generator(), steps=31)


def test_guidance_combines_conditional_and_unconditional_predictions():
    x, t = torch.ones(2, 3), torch.zeros(2, dtype=torch.long)
    conditional, unconditional = (lambda x, t: 2 * x), (lambda x, t: -x)
    assert guided(conditional, unconditional, 0.0) is conditional
    torch.testing.assert_close(guided(conditional, unconditional, 0.5)(x, t), 1.5 * 2 * x + 0.5 * x)


def test_ema_follows_the_weights_with_warm_up_and_round_trips():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.zero_()
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)                     # decay_1 = min(0.9, 2/11)
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 2), 1 - 2 / 11))
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], torch.ones(1, 2), atol=1e-6, rtol=0)
    copy = EMA(nn.Linear(2, 1))
    copy.load_state_dict(ema.state_dict())
    target = nn.Linear(2, 1)
    copy.copy_to(target)
    assert copy.updates == 201 and torch.equal(target.weight, ema.shadow["weight"])


def test_a_schedule_that_does_not_end_in_noise_is_refused():
    NoiseSchedule.linear(400, 1e-4, 0.02).check_ends_in_noise("ddpm")             # alpha_bar_T = 0.017
    with pytest.raises(ValueError, match=r"ddpm: with 100 steps the schedule keeps alpha_bar_T = 0\.364"):
        NoiseSchedule.linear(100, 1e-4, 0.02).check_ends_in_noise("ddpm")
