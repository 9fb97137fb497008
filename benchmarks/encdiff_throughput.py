"""EncDiff's training cost at its quick and paper configurations, fp32 and bf16 side by side:
training-step throughput, peak memory, the projected wall time of the run, and the time of one
Dynamic Gaussian Anchoring refit.

    python benchmarks/encdiff_throughput.py                            # CPU: quick and paper configurations
    python benchmarks/encdiff_throughput.py --device cuda --paper-batch 512 --steps 20

A training step as the method runs it (`methods.encdiff.batch_loss`): encoder -> tokens,
anchoring, the space's latents (paper: the untrained, same-sized VQ first stage of 64 x 64 x 3
images; quick: pixels of 1 x 32 x 32 sprites, folded), the UNet with Skip Dropout, L1 loss,
AdamW and the EMA update of the UNet, on random images held as one tensor on the device. Each
mode runs in its own process. The paper run is projected for Shapes3D (480,000 images x the
configuration's epochs); the quick run for its own epochs x steps_per_epoch batches. The
refit: the per-unit mixtures on `--tokens` random tokens (fp32 in every mode). The method
itself trains in the `bf16` mode's layout (methods/encdiff.py CHANNELS_LAST). Prints;
asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.config import method_config  # noqa: E402
from benchmarks.precision_modes import (MODES, add_arguments, measure_modes, peak_memory_mib,  # noqa: E402
                                        print_table, report, synchronise)
from methods.encdiff import EncDiff, PixelSpace, VQSpace, batch_loss, to_signed  # noqa: E402
from methods.nets import precision  # noqa: E402
from methods.nets.diffusion import EMA, NoiseSchedule  # noqa: E402
from methods.nets.gaussian_anchoring import AnchoringSettings, GaussianAnchors  # noqa: E402
from methods.nets.vq_autoencoder import KEYS, VQAutoencoder  # noqa: E402

SHAPES3D_IMAGES = 480_000
CONFIGURATIONS = {"quick": "quick+sd+dyga", "paper": "encdiff+sd+dyga"}


def measure(args, configuration: str, mode: str) -> dict:
    config = method_config("encdiff", CONFIGURATIONS[configuration])
    compute, channels_last = MODES[mode]
    device = args.device
    compute = precision.resolve(compute, device)
    batch = args.paper_batch if configuration == "paper" else config["batch_size"]
    shape = (1, 32, 32) if config["space"] == "pixels" else (3, 64, 64)
    torch.manual_seed(0)
    generator = torch.Generator(device=device).manual_seed(0)
    if config["space"] == "pixels":
        space = PixelSpace(config["fold"])
    else:
        space = VQSpace(precision.prepare(VQAutoencoder({key: config["vq_" + key] for key in KEYS}), device, compute,
                                          channels_last))
    images = torch.randint(0, 256, (max(batch, 64), *shape), dtype=torch.uint8, generator=generator, device=device)
    latent_channels = space.encode(to_signed(images[:1])).shape[1]
    model = precision.prepare(EncDiff(shape, latent_channels, config), device, compute, channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    ema = EMA(model.unet, config["ema_decay"])
    schedule = NoiseSchedule.named(config["schedule"], config["steps"], config["beta_start"], config["beta_end"])
    with torch.no_grad():
        tokens = torch.cat([model.tokens(to_signed(images[i:i + 64])) for i in range(0, len(images), 64)])
    anchors = GaussianAnchors.fit(tokens.repeat(max(1, 2000 // len(tokens)), 1, 1), generator,
                                  AnchoringSettings.from_config(config))
    model.train()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:                         # the first steps warm up kernels and allocators
            synchronise(device)
            start = time.perf_counter()
        index = torch.randint(0, len(images), (batch,), generator=generator, device=device)
        loss = batch_loss(model, space, anchors, to_signed(images[index]), schedule, generator)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        ema.update(model.unet)
    synchronise(device)
    step_seconds = (time.perf_counter() - start) / args.steps
    run_images = (SHAPES3D_IMAGES * config["epochs"] if configuration == "paper"
                  else config["epochs"] * config["steps_per_epoch"] * batch)
    return {"images_per_s": batch / step_seconds, "ms_per_step": step_seconds * 1000,
            "peak_mib": peak_memory_mib(device), "run_h": run_images * step_seconds / batch / 3600, "batch": batch}


def refit_seconds(args) -> tuple[float, float]:
    config = method_config("encdiff", CONFIGURATIONS["paper"])
    generator = torch.Generator(device=args.device).manual_seed(0)
    tokens = torch.rand((args.tokens, config["units"], config["token_dim"]), generator=generator, device=args.device)
    start = time.perf_counter()
    anchors = GaussianAnchors.fit(tokens, generator, AnchoringSettings.from_config(config))
    synchronise(args.device)
    return time.perf_counter() - start, float(anchors.n_components.float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--configurations", nargs="+", default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS))
    parser.add_argument("--configuration", choices=list(CONFIGURATIONS), help="with --mode (internal)")
    parser.add_argument("--paper-batch", type=int, default=32, help="the paper's is 512: too slow a step on a CPU")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=10_000, help="images whose tokens the refit sees")
    args = parser.parse_args()
    if args.mode:
        report(measure(args, args.configuration, args.mode))
        return
    print(f"EncDiff + SD + DyGA; device {args.device}, torch threads {torch.get_num_threads()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for configuration in args.configurations:
        config = method_config("encdiff", CONFIGURATIONS[configuration])
        projected = (f"{config['epochs']} epochs of Shapes3D's {SHAPES3D_IMAGES:,} images" if configuration == "paper"
                     else f"{config['epochs']} epochs x {config['steps_per_epoch']} steps")
        print(f"\n{configuration} ({CONFIGURATIONS[configuration]}, space {config['space']}); run h: {projected}")
        argv = ["--device", args.device, "--configuration", configuration, "--paper-batch", str(args.paper_batch),
                "--steps", str(args.steps), "--warmup", str(args.warmup)]
        print_table(measure_modes(argv, args.modes), {"batch": "batch", "images_per_s": "img/s", "ms_per_step": "ms/step",
                                                      "peak_mib": "peak MiB", "run_h": "run h"})
    seconds, components = refit_seconds(args)
    print(f"\nDyGA refit (paper settings, fp32) on {args.tokens:,} random tokens: {seconds:.1f} s (mean K {components:.1f})")


if __name__ == "__main__":
    main()
