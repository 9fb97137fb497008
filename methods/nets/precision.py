"""Mixed precision for the networks: bf16 where the device computes it natively, fp32 elsewhere.

A run's `precision` setting is fp32, bf16 or auto. bf16 puts each network of a model (the
model's direct children: encoder, UNet, decoder, heads) under `torch.autocast` in bf16 for
the passes that train it (training mode, gradients on), and hands what it returns back as
fp32: losses, KL terms and mixture responsibilities are computed in fp32 from there on. The
passes without gradients or in eval mode (read-outs, E-step draws, samples, everything a
metric scores) compute in fp32 throughout: bf16's three significant digits would tie
neighbouring latent codes and move the metrics. Modules
that must stay fp32 inside a network (a Cholesky whitening, a codebook's nearest-code search)
are marked `@full_precision`. Conv models also go channels-last under bf16, where oneDNN's
bf16 convolutions are fastest; fp32 runs keep the default layout, so their numbers do not
move with this file. Two CPU kernels are slow in bf16 and are routed around (measured by
benchmarks/encdiff_throughput.py, with --modes to compare): GroupNorm on a channels-last bf16
tensor (10-30x its contiguous kernel) gets its input contiguous, and attention computes in
fp32 on the CPU (torch's bf16 attention kernel is 4-6x slower than its fp32 one at these
head sizes).

bf16 is native on CUDA GPUs that report it and on CPUs with AMX or AVX512-BF16 while torch
runs its AVX512 kernels; elsewhere it is emulated, slower than fp32, and refused.
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils._pytree import tree_map_only

from common.schema import ConfigError

PRECISIONS = ("fp32", "bf16", "auto")


class PrecisionError(ConfigError):
    """A precision the device cannot honour (a config error: the CLI reports it without a traceback)."""


def bf16_unsupported(device: str) -> str | None:
    """Why `device` has no native bf16, or None when it has."""
    if device.startswith("cuda"):
        return None if torch.cuda.is_bf16_supported() else f"GPU {torch.cuda.get_device_name()} has no native bf16"
    # torch's own probes of the CPU's instruction set (private, but the ones its kernels use)
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "this CPU has neither AMX nor AVX512-BF16, so bf16 would be emulated (slower than fp32)"
    capability = torch.backends.cpu.get_cpu_capability()
    if not capability.startswith("AVX512"):
        forced = os.environ.get("ATEN_CPU_CAPABILITY")
        return (f"torch runs its {capability} kernels here" + (f" (ATEN_CPU_CAPABILITY={forced})" if forced else "")
                + ", whose bf16 is emulated (slower than fp32)")
    return None


def resolve(setting: str, device: str) -> str:
    """The precision a run computes in: fp32 or bf16. `auto` takes bf16 where it is native."""
    if setting not in PRECISIONS:
        raise PrecisionError(f"unknown precision '{setting}'; valid: {', '.join(PRECISIONS)}")
    if setting == "fp32":
        return "fp32"
    problem = bf16_unsupported(device)
    if setting == "auto":
        return "fp32" if problem else "bf16"
    if problem:
        raise PrecisionError(f"precision bf16 refused on {device}: {problem}; use precision fp32, or auto "
                             "(bf16 only where it is native)")
    return "bf16"


def prepare(model: nn.Module, device: str, precision: str, channels_last: bool = True) -> nn.Module:
    """`model` on `device`; under bf16 each of its networks computes its training passes in
    bf16 (conv models channels-last unless `channels_last` is False) and returns fp32."""
    model = model.to(device)
    if precision != "bf16":
        return model
    if channels_last and any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
        for norm in model.modules():
            if isinstance(norm, nn.GroupNorm):
                norm.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))
    for network in model.children():
        if not getattr(type(network).forward, "full_precision", False):
            _compute_in_bf16(network, torch.device(device).type)
    return model


def _to_fp32(output):
    return tree_map_only(torch.Tensor, lambda t: t.float() if t.dtype == torch.bfloat16 else t, output)


def _compute_in_bf16(module: nn.Module, device_type: str) -> None:
    """Hooks (not a replaced forward, so that copies and state dicts are untouched): autocast
    on before a training pass of the module's forward, off after it, its outputs cast back to fp32."""
    open_contexts = []

    def enter(_module, _args):
        trains = module.training and torch.is_grad_enabled()
        open_contexts.append(torch.autocast(device_type, dtype=torch.bfloat16) if trains else contextlib.nullcontext())
        open_contexts[-1].__enter__()

    def leave(_module, _args, output):
        open_contexts.pop().__exit__(None, None, None)
        return _to_fp32(output)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave, always_call=True)        # autocast is closed on an exception too


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, in fp32 for bf16 inputs on the CPU (its fast kernel there)."""
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        with torch.autocast("cpu", enabled=False):          # which would cast the inputs back to bf16
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


def full_precision(forward):
    """Decorates a module's forward that must compute in fp32 inside a bf16 network: autocast
    off, floating inputs cast to fp32."""
    @functools.wraps(forward)
    def wrapped(self, *args, **kwargs):
        args, kwargs = _to_fp32((args, kwargs))
        device_type = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type, enabled=False):
            return forward(self, *args, **kwargs)
    wrapped.full_precision = True
    return wrapped
