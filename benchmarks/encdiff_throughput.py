"""EncDiff's training cost at the paper configuration: images/s of a training step and the
time of one Dynamic Gaussian Anchoring refit.

    python benchmarks/encdiff_throughput.py --batch 8                  # CPU: a small batch
    python benchmarks/encdiff_throughput.py --device cuda --batch 512 --precision bf16

A training step as the method runs it (methods/encdiff.py): encoder -> 20 tokens, anchoring,
the (untrained, same-sized) VQ first stage's latents, the UNet with Skip Dropout, L1 loss,
AdamW and the EMA update, on random 64 x 64 x 3 images held as one tensor on the device. The
refit: the per-unit mixtures on `--tokens` random tokens (the paper subsamples 10% above
100,000 images). Prints; asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.config import method_config  # noqa: E402
from methods.base import RunContext  # noqa: E402
from methods.encdiff import EncDiff, VQSpace, to_signed  # noqa: E402
from methods.nets.diffusion import EMA, NoiseSchedule  # noqa: E402
from methods.nets.gaussian_anchoring import AnchoringSettings, GaussianAnchors  # noqa: E402
from methods.nets.vq_autoencoder import KEYS, VQAutoencoder  # noqa: E402


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--variant", default="encdiff+sd+dyga")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=10_000, help="images whose tokens the refit sees")
    args = parser.parse_args()

    config = method_config("encdiff", args.variant)
    run = RunContext(Path("."), seed=0, device_setting=args.device, precision=args.precision)
    device = run.device
    torch.manual_seed(0)
    generator = torch.Generator(device=device).manual_seed(0)
    space = VQSpace(VQAutoencoder({key: config["vq_" + key] for key in KEYS}).to(device))
    images = torch.randint(0, 256, (max(args.batch, 64), 3, 64, 64), dtype=torch.uint8, generator=generator,
                           device=device)
    latent_channels = space.encode(to_signed(images[:1])).shape[1]
    model = EncDiff((3, 64, 64), latent_channels, config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    ema = EMA(model, config["ema_decay"])
    schedule = NoiseSchedule.named(config["schedule"], config["steps"], config["beta_start"], config["beta_end"])
    print(f"device {device}, precision {args.precision}, variant {args.variant}, batch {args.batch}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters (encoder + UNet)")

    start = time.perf_counter()
    tokens = torch.rand((args.tokens, config["units"], config["token_dim"]), generator=generator, device=device)
    anchors = GaussianAnchors.fit(tokens, generator, AnchoringSettings.from_config(config))
    synchronise(device)
    print(f"DyGA refit on {args.tokens:,} x {config['units']} tokens of {config['token_dim']} dims: "
          f"{time.perf_counter() - start:.1f} s (mean K {anchors.n_components.float().mean():.1f})")

    model.train()
    for step in range(args.steps + 1):
        if step == 1:                                   # the first step warms up kernels and allocators
            synchronise(device)
            start = time.perf_counter()
        index = torch.randint(0, len(images), (args.batch,), generator=generator, device=device)
        x = to_signed(images[index])
        with run.autocast():
            context, _ = anchors.anchor(model.tokens(x))
            latents = space.encode(x)
            t = schedule.random_timesteps(args.batch, generator)
            noise = torch.randn(latents.shape, generator=generator, device=device)
            loss = (model.unet(schedule.add_noise(latents, t, noise), t, context).float() - noise).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        ema.update(model)
    synchronise(device)
    seconds = (time.perf_counter() - start) / args.steps
    print(f"training: {args.batch / seconds:,.1f} images/s ({seconds * 1000:.0f} ms per step of {args.batch})")


if __name__ == "__main__":
    main()
