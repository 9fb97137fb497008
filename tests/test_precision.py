"""bf16 on CPU (methods/nets/precision.py): refused where it would be emulated, the fp32 loss
within a stated tolerance where it is native, and bf16 runs as deterministic as fp32 runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import datasets
from bench import runner
from bench.config import RunId, method_config
from conftest import REPO
from methods import clusterddpm, encdiff
from methods.nets import precision
from methods.nets.diffusion import NoiseSchedule

NATIVE = precision.bf16_unsupported("cpu")
needs_native_bf16 = pytest.mark.skipif(NATIVE is not None, reason=f"no native bf16 on this CPU: {NATIVE}")
# bf16 keeps 8 bits of mantissa (a relative step of 0.4%); through a network and a loss
# summed over thousands of terms the step's loss moves by far less than this
LOSS_TOLERANCE = 0.02
GRADIENT_COSINE = 0.95
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2"}      # torch's AVX2 kernels: what a CPU without AVX512 computes with


def python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_bf16_is_refused_and_auto_takes_fp32_where_the_cpu_would_emulate_it():
    done = python("from methods.nets.precision import resolve, PrecisionError\n"
                  "print(resolve('auto', 'cpu'))\n"
                  "try:\n    resolve('bf16', 'cpu')\nexcept PrecisionError as error:\n    print(error)", AVX2)
    auto, refusal = done.stdout.strip().splitlines()
    assert auto == "fp32"
    assert refusal.startswith("precision bf16 refused on cpu") and "emulated (slower than fp32)" in refusal
    assert "use precision fp32, or auto" in refusal


def test_the_cli_refuses_bf16_before_a_run_directory_exists(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--suite", "smoke", "--dataset", "digits",
                           "--method", "gmvae", "--variant", "smoke", "--seed", "0", "--precision", "bf16",
                           "--device", "cpu", "--data-dir", str(tmp_path / "data"),
                           "--results-dir", str(tmp_path / "results")],
                          cwd=REPO, env={**os.environ, **AVX2}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error: precision bf16 refused on cpu" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()


def same_model(build, compute: str):
    """The model of `build()` under seed 0, prepared for `compute` (weights identical)."""
    torch.manual_seed(0)
    return precision.prepare(build(), "cpu", compute)


def compare_step(build, loss_of):
    """The loss and the gradient of one step in fp32 and in bf16 on the same batch and draws."""
    results = []
    for compute in ("fp32", "bf16"):
        model = same_model(build, compute)
        loss = loss_of(model, torch.Generator().manual_seed(1))
        assert loss.dtype == torch.float32                        # what leaves the networks is fp32
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    (fp32_loss, fp32_grad), (bf16_loss, bf16_grad) = results
    assert bf16_loss != fp32_loss                                  # bf16 did compute
    assert abs(bf16_loss - fp32_loss) <= LOSS_TOLERANCE * abs(fp32_loss)
    assert torch.nn.functional.cosine_similarity(fp32_grad, bf16_grad, dim=0) >= GRADIENT_COSINE


@needs_native_bf16
def test_read_outs_compute_in_fp32_and_training_passes_in_bf16():
    config = {**method_config("clusterddpm", "smoke"), "z_dim": 4}
    g = torch.Generator().manual_seed(0)
    images = torch.rand((16, 1, 28, 28), generator=g) * torch.rand((16, 1, 1, 1), generator=g)
    fp32, bf16 = (same_model(lambda: clusterddpm.ClusterDDPM(1, 28, config), compute) for compute in ("fp32", "bf16"))
    for model in (fp32, bf16):
        model.eval()
    with torch.no_grad():        # a read-out: fp32 throughout (channels-last convolutions round alike to 1e-6)
        read_out = [model.encoder(images)[0] for model in (fp32, bf16)]
    torch.testing.assert_close(*read_out, rtol=1e-5, atol=1e-6)
    for model in (fp32, bf16):
        model.train()
    trained = [model.encoder(images)[0] for model in (fp32, bf16)]
    assert trained[1].dtype == torch.float32                                      # bf16 inside, fp32 out
    assert 1e-4 < (trained[0] - trained[1]).abs().max() < 0.05


@needs_native_bf16
def test_clusterddpm_em_step_in_bf16_gives_the_fp32_loss(prepared_data):
    config = {**method_config("clusterddpm", "paper"), "n_feat": 16}
    images = torch.from_numpy(np.asarray(datasets.get("digits").load(prepared_data).x[:64], np.float32) / 255)
    images = torch.nn.functional.interpolate(images, size=28)        # the paper's 28 x 28 UNet
    schedule = NoiseSchedule.linear(config["steps"], config["beta_start"], config["beta_end"])
    z = clusterddpm.encode(same_model(lambda: clusterddpm.ClusterDDPM(1, 28, config), "fp32"), images,
                           torch.Generator().manual_seed(2))[1].double().numpy()
    mixture = clusterddpm.as_tensors(clusterddpm.mixture_state(clusterddpm.fit_mixture(z, 4, 0, config, None)), "cpu")
    compare_step(lambda: clusterddpm.ClusterDDPM(1, 28, config),
                 lambda model, g: clusterddpm.batch_loss(model, images, mixture, schedule, g, config)[0])


@needs_native_bf16
def test_encdiff_step_in_bf16_gives_the_fp32_loss(prepared_data):
    config = method_config("encdiff", "quick+sd")
    images = torch.from_numpy(np.array(datasets.get("sprites").load(prepared_data).x[::97][:64]))
    space = encdiff.PixelSpace(config["fold"])
    schedule = NoiseSchedule.named(config["schedule"], config["steps"], config["beta_start"], config["beta_end"])
    channels = space.encode(encdiff.to_signed(images[:1])).shape[1]

    def build():            # the UNet's last conv starts at zero: give the output something to say
        model = encdiff.EncDiff((1, 32, 32), channels, config)
        torch.nn.init.normal_(model.unet.out[-1].weight, std=0.05)
        return model
    compare_step(build,
                 lambda model, g: encdiff.batch_loss(model, space, None, encdiff.to_signed(images), schedule, g)[0])


NETWORK_RUNS = [("digits", "gmvae"), ("digits", "nmm"), ("digits", "clusterddpm"), ("blobs", "vdae"),
                ("blobs", "vae"), ("sprites", "beta_vae"), ("sprites", "encdiff")]


@needs_native_bf16
@pytest.mark.parametrize("dataset, method", NETWORK_RUNS)
def test_a_bf16_run_repeats_exactly_and_records_its_precision(config, prepared_data, dataset, method):
    data_config = {**config, "data_dir": str(prepared_data), "precision": "auto"}
    run = RunId("smoke", dataset, method, "smoke", 0)
    outputs = []
    for attempt in range(2):
        run_dir = runner.train({**data_config, "results_dir": f"results{attempt}"}, run, force=True)
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "completed"
        assert (record["precision_setting"], record["precision"]) == ("auto", "bf16")
        with np.load(run_dir / "outputs.npz") as saved:
            outputs.append(dict(saved))
    assert outputs[0].keys() == outputs[1].keys()
    for key in outputs[0]:
        np.testing.assert_array_equal(outputs[0][key], outputs[1][key], err_msg=key)
