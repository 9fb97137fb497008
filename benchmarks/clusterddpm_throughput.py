"""ClusterDDPM's cost at the paper configuration, fp32 and bf16 side by side: M-step
throughput, the E-step's encoding, peak memory, and the projected wall time of the paper run.

    python benchmarks/clusterddpm_throughput.py                     # CPU: fp32, bf16, bf16 + channels-last
    python benchmarks/clusterddpm_throughput.py --device cuda --steps 50

Measures, on MNIST-shaped random images held as one tensor on the device (batched by index,
no data-loader workers, as the method does), each mode in its own process:
- M-step: `--steps` Adam steps of the EM loss (summed MSE + 0.1 KL) at batch 128, after
  `--warmup` steps: images/s and ms/step;
- E-step: encoding `--n` images, in fp32 in every mode (a pass without gradients; the
  mixture refit on their z is not timed here: the method's log has it);
- the paper run projected from both: (10 + 570) epochs of 70,000 images.
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
from benchmarks.precision_modes import (MODES, add_arguments, measure_modes, peak_memory_mib,  # noqa: E402
                                        print_table, report, synchronise)
from methods.clusterddpm import ClusterDDPM, as_tensors, batch_loss, encode, fit_mixture, mixture_state  # noqa: E402
from methods.nets import precision  # noqa: E402
from methods.nets.diffusion import NoiseSchedule  # noqa: E402

MNIST_IMAGES = 70_000


def measure(args, mode: str) -> dict:
    config = method_config("clusterddpm", args.variant)
    compute, channels_last = MODES[mode]
    device = args.device
    compute = precision.resolve(compute, device)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.rand((args.n, 1, 28, 28), generator=generator, device=device)
    torch.manual_seed(0)
    model = precision.prepare(ClusterDDPM(1, 28, config), device, compute, channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=config["lr"])
    schedule = NoiseSchedule.linear(config["steps"], config["beta_start"], config["beta_end"])
    z = encode(model, images[:2000], generator)[1].cpu().double().numpy()
    mixture = as_tensors(mixture_state(fit_mixture(z, 10, 0, config, None)), device)

    batch = config["batch_size"]
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            synchronise(device)
            start = time.perf_counter()
        index = torch.randint(0, args.n, (batch,), generator=generator, device=device)
        loss = batch_loss(model, images[index], mixture, schedule, generator, config)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    synchronise(device)
    step_seconds = (time.perf_counter() - start) / args.steps

    start = time.perf_counter()
    encode(model, images, generator)
    synchronise(device)
    encode_rate = args.n / (time.perf_counter() - start)
    epochs = config["pretrain_epochs"] + config["em_epochs"]
    hours = epochs * MNIST_IMAGES * (step_seconds / batch + 1 / encode_rate) / 3600
    return {"images_per_s": batch / step_seconds, "ms_per_step": step_seconds * 1000, "encode_per_s": encode_rate,
            "peak_mib": peak_memory_mib(device), "paper_run_h": hours, "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--n", type=int, default=10_000, help="images encoded in the E-step")
    args = parser.parse_args()
    if args.mode:
        report(measure(args, args.mode))
        return
    config = method_config("clusterddpm", args.variant)
    print(f"ClusterDDPM {args.variant}: n_feat {config['n_feat']}, z {config['z_dim']}, T {config['steps']}, "
          f"batch {config['batch_size']}; device {args.device}, torch threads {torch.get_num_threads()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    argv = ["--device", args.device, "--variant", args.variant, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--n", str(args.n)]
    results = measure_modes(argv, args.modes)
    print_table(results, {"images_per_s": "M-step img/s", "ms_per_step": "ms/step", "encode_per_s": "encode img/s",
                          "peak_mib": "peak MiB", "paper_run_h": "paper run h"})
    print(f"paper run: {config['pretrain_epochs'] + config['em_epochs']} epochs of {MNIST_IMAGES:,} images, M-steps "
          "and E-step encodings (the mixture refits come on top, the same in every mode)")


if __name__ == "__main__":
    main()
