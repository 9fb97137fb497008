"""ClusterDDPM's cost at the paper configuration: M-step throughput (images/s) and E-step time.

    python benchmarks/clusterddpm_throughput.py                     # CPU, fp32
    python benchmarks/clusterddpm_throughput.py --device cuda --precision bf16

Measures, on MNIST-shaped random images held as one tensor on the device (batched by index,
no data-loader workers, as the method does):
- M-step: `--steps` Adam steps of the EM loss (summed MSE + 0.1 KL) at batch 128, after
  `--warmup` steps, in images per second; and the projected time of one 70,000-image epoch.
- E-step: encoding `--n` images plus the warm-started diagonal mixture refit on their z.
Prints; asserts nothing.
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
from methods.clusterddpm import (ClusterDDPM, as_tensors, batch_loss, encode, fit_mixture,  # noqa: E402
                                 mixture_state)
from methods.nets.diffusion import NoiseSchedule  # noqa: E402

MNIST_IMAGES = 70_000


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--n", type=int, default=MNIST_IMAGES, help="images encoded in the E-step")
    args = parser.parse_args()

    config = method_config("clusterddpm", args.variant)
    run = RunContext(Path("."), seed=0, device_setting=args.device, precision=args.precision)
    device = run.device
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.rand((args.n, 1, 28, 28), generator=generator, device=device)
    torch.manual_seed(0)
    model = ClusterDDPM(1, 28, config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config["lr"])
    schedule = NoiseSchedule.linear(config["steps"], config["beta_start"], config["beta_end"])
    print(f"device {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}), "
          f"precision {args.precision}, torch threads {torch.get_num_threads()}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, T = {config['steps']}")

    def e_step(previous):
        z = encode(model, images, generator)[1].cpu().double().numpy()
        return fit_mixture(z, 10, 0, config, previous)

    start = time.perf_counter()
    mixture = e_step(None)
    print(f"first E-step (fresh mixture) on {args.n:,} images: {time.perf_counter() - start:.1f} s")
    state = mixture_state(mixture)
    tensors = as_tensors(state, device)

    batch = config["batch_size"]
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            synchronise(device)
            start = time.perf_counter()
        index = torch.randint(0, args.n, (batch,), generator=generator, device=device)
        with run.autocast():
            loss = batch_loss(model, images[index], tensors, schedule, generator, config)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    synchronise(device)
    seconds = time.perf_counter() - start
    rate = args.steps * batch / seconds
    print(f"M-step: {rate:,.0f} images/s at batch {batch} ({seconds / args.steps * 1000:.0f} ms/step); "
          f"one {MNIST_IMAGES:,}-image epoch ~ {MNIST_IMAGES / rate / 60:.1f} min")

    start = time.perf_counter()
    e_step(state)
    synchronise(device)
    print(f"E-step (encode {args.n:,} images + warm-started refit): {time.perf_counter() - start:.1f} s")
    epochs = config["pretrain_epochs"] + config["em_epochs"]
    print(f"projected paper run ({epochs} epochs): ~{epochs * (MNIST_IMAGES / rate) / 3600:.1f} h of M-steps")


if __name__ == "__main__":
    main()
