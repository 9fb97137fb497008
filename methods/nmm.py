"""NMM: neural mixture models with EM for end-to-end deep clustering (Tissera et al., arXiv 2107.02453).

    python -m bench run --suite paper --dataset cifar10 --method nmm --variant paper --seed 0
    python -m bench run --suite quick --dataset digits --method nmm --variant quick --seed 0

Spec: docs/methods/nmm.md. No official code exists and only the paper's abstract and
summaries could be read, so this is a reconstruction: every choice below marked (ours) is ours.

What the paper states: the K final-layer outputs of a network, after a transformation,
approximate the K cluster densities p(x | theta_k), constrained to behave like densities so
that the trivial solution (one cluster, or unbounded outputs) is excluded; training is
batch-wise EM, the forward pass the E-step (responsibilities), the backward pass the M-step
(maximise the expected complete-data log-likelihood with the responsibilities fixed); for
images the mixture-EM objective is fused with a consistency objective between augmented views
and beats consistency alone; single stage, no k-means step. Published: ACC 98.9 (MNIST), 58.0
(CIFAR-10), 25.9 (CIFAR-100, read as the 20 superclasses), 63.8 (STL-10).

The model, for a batch x_1..x_B with final-layer outputs s_ik = s_k(x_i):

    log f_k(x_i) = log_softmax over the batch (i) of s_ik     f_k is a density over the batch's samples
    E-step (no gradient):  g0_ik = softmax_k log f_k(x_i)     responsibilities under uniform weights
                           pi_k  = mean_i g0_ik               mixing weights from the batch
                           gamma_ik = pi_k f_k(x_i) / sum_j pi_j f_j(x_i)
    M-step loss:           em(gamma) = -mean_i sum_k gamma_ik log(pi_k f_k(x_i))

`density_constraint: false` drops the normalisation over the batch: log f_k(x_i) = s_ik, i.e.
f_k = exp(s_k), unnormalised (the ablation the collapse test runs). With two augmented views
a and b of the batch, each with its own densities, weights and responsibilities:

    em          = (em_a(gamma_a) + em_b(gamma_b)) / 2                     each view its own targets
    consistency = (em_b(gamma_a) + em_a(gamma_b)) / 2                     one view's targets for the other
    entropy     = mean over the views of H(mean_i p_i), p_ik = softmax_k log(pi_k f_k(x_i)) with gradient
    loss        = [em] + [consistency] - entropy_weight * entropy

`objective` picks the bracketed terms: em, consistency (the paper's ablation), or
em+consistency (the paper's method). The consistency term is the M-step objective of one
view with the other view's responsibilities as stop-gradient targets, symmetric in the views.
Every term is logged whatever the objective.

Read-out (ours): the networks in eval mode on the un-augmented score split; the normalisation
over "the batch" is taken over the whole split (log f_k(x_i) = s_ik - logsumexp over all N
examples of s_k), and the E-step above runs once over all N examples. The read-out is then
one well-defined function of the split, independent of batch size and order.
probs = gamma (N x K, rows sum to 1) and log_probs = log gamma; assignments = argmax_k gamma_ik; embedding = the
backbone's penultimate features (N x d, the input of the K-way output layer).

Backbones (ours, written here): `conv` for C x 28 x 28 images: three 3x3 conv + BN + ReLU
blocks of width, 2*width, 4*width channels (2x2 max-pool after the first two; the third with
stride 2: 28 -> 14 -> 7 -> 4), flattened, a linear layer to 8*width features + BN + ReLU.
`resnet18`: ResNet-18 (basic blocks, stages of 2, widths width..8*width, global average
pool, 8*width features); its stem is a 3x3 conv for inputs up to 32 x 32 (CIFAR style) and
a 7x7 stride-2 conv with 3x3 stride-2 max-pool for larger ones (96 x 96 -> 24 x 24).
`mlp` (point data): two linear + BN + ReLU layers of `width` units. `auto`: points -> mlp,
1 x 28 x 28 -> conv, colour (3 channels) of side >= 32 -> resnet18; any other shape must
name its backbone.

Augmentations (ours; written here, vectorised over the batch, every draw from the run's
generator): random resized crop (area fraction uniform in [crop_scale_min, 1], aspect ratio
log-uniform in [3/4, 4/3], uniform position, bilinear resampling with an affine grid) for all
images; for colour images only, also a horizontal flip (p = 1/2), colour jitter (brightness,
contrast, saturation, each factor uniform in [1 - jitter, 1 + jitter], in that fixed order;
no hue jitter) and greyscale (p = greyscale_prob). Digits and MNIST get the crop only. Point
data is not augmented: its two views are the same points. torchvision's v2 transforms are not
used: they draw one set of parameters per call, shared by a whole batch tensor, and a call per
image is slow on CPU; they also draw from torch's global RNG, not the run's generator.

Determinism: as methods/gmvae.py: weights initialised under a forked torch RNG seeded with
run.seed; every training draw (shuffling, augmentations) from one torch.Generator on the run's
device seeded with run.seed; a checkpoint every `checkpoint_every` epochs holds model,
optimiser, epoch and that generator's state, so a resumed run equals an uninterrupted one
(bit-identical on CPU). A non-finite loss raises FloatingPointError naming epoch and step.

Choices that are ours (the paper's values could not be read):
- f_k as a softmax over the batch (the spec's first option), and pi from one E-step under
  uniform weights inside each batch (no running estimate across batches); pi is held fixed in
  the M-step (its closed-form update is exactly this batch mean).
- The consistency term as the cross-view M-step objective above (not IIC's mutual
  information); the entropy term on the marginal of the posteriors, off (weight 0) in the
  paper variants: the batch-wise constraint alone keeps every cluster in use.
- Target sharpening: the M-step's targets are gamma^(1/T) renormalised over k, T =
  `target_temperature` (0.5 in the paper variants, 0.25 in quick), in place of gamma itself.
  This is no longer the EM M-step: the posterior is replaced by a sharpened pseudo-label
  (self-training). T = 1 is the plain EM M-step; the quick suite runs both (quick, quick-t1)
  side by side to measure what sharpening does.
- The read-out over the whole split (above); the backbones and augmentations (above).
- Adam; the learning rate, batch size (512, the spec's 256-512 range), epochs (200) and widths
  of the paper variants; the paper variants train and score on the `all` split (train+test,
  the IIC convention the published entries assume). Training drops each epoch's last
  incomplete batch (the order is reshuffled every epoch, so every example is seen).
- The quick and smoke settings (conv width, batch size, epochs, learning rate).
- Under precision bf16 (where native: CUDA, or a CPU with AMX or AVX512-BF16) the networks'
  training passes compute in bf16, channels-last (conv); losses, KL terms, the EM
  responsibilities and every read-out are fp32 (ours; methods/nets/precision.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from methods.base import Method, RunContext, RunData, Training, flat_features

OBJECTIVES = ("em", "consistency", "em+consistency")
BACKBONES = ("auto", "conv", "resnet18", "mlp")
READOUT_BATCH = 500
LUMA = (0.299, 0.587, 0.114)


# The mixture and its objectives ---------------------------------------------------------

def log_densities(scores: torch.Tensor, constrained: bool) -> torch.Tensor:
    """log f_k(x_i) from the outputs s (B x K): each column log-softmaxed over the batch, or s as it is."""
    return scores.log_softmax(0) if constrained else scores


@torch.no_grad()
def e_step(log_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi (K) from the batch's responsibilities under uniform weights, and gamma (B x K)."""
    log_pi = torch.logsumexp(log_f.log_softmax(1), 0) - math.log(len(log_f))
    return log_pi, (log_pi + log_f).softmax(1)


def sharpen(gamma: torch.Tensor, temperature: float) -> torch.Tensor:
    """gamma_ik^(1/T) renormalised over k: the targets of the M-step (T = 1: gamma itself)."""
    return (gamma.clamp_min(1e-30).log() / temperature).softmax(1)


def em_loss(log_f: torch.Tensor, log_pi: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Minus the expected complete-data log-likelihood, mean over the batch (gamma, pi fixed)."""
    return -(gamma * (log_pi + log_f)).sum(1).mean()


def consistency_loss(view_a: tuple, view_b: tuple) -> torch.Tensor:
    """The M-step objective of each view with the other view's responsibilities as targets."""
    (f_a, pi_a, gamma_a), (f_b, pi_b, gamma_b) = view_a, view_b
    return (em_loss(f_b, pi_b, gamma_a) + em_loss(f_a, pi_a, gamma_b)) / 2


def marginal_entropy(log_f: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """H(mean_i p_i) of the posteriors p_ik = softmax_k log(pi_k f_k(x_i)), with gradient."""
    marginal = (log_pi + log_f).softmax(1).mean(0)
    return -(marginal * marginal.clamp_min(1e-12).log()).sum()


def objective_terms(scores_a: torch.Tensor, scores_b: torch.Tensor, config: dict) -> dict[str, torch.Tensor]:
    """Every term of the loss for the two views' outputs, and the loss the objective selects."""
    views = []
    for scores in (scores_a, scores_b):
        log_f = log_densities(scores, config["density_constraint"])
        log_pi, gamma = e_step(log_f)
        views.append((log_f, log_pi, sharpen(gamma, config["target_temperature"])))
    terms = {"em": sum(em_loss(*view) for view in views) / 2,
             "consistency": consistency_loss(*views),
             "entropy": sum(marginal_entropy(log_f, log_pi) for log_f, log_pi, _ in views) / 2}
    selected = sum(terms[name] for name in config["objective"].split("+"))
    terms["loss"] = selected - config["entropy_weight"] * terms["entropy"]
    terms["cluster"] = views[0][2].argmax(1)
    return terms


# Networks -------------------------------------------------------------------------------

def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def conv_net(channels: int, width: int) -> tuple[nn.Module, int]:
    net = nn.Sequential(conv_bn(channels, width), nn.MaxPool2d(2), conv_bn(width, 2 * width), nn.MaxPool2d(2),
                        conv_bn(2 * width, 4 * width, stride=2), nn.Flatten(),
                        nn.Linear(4 * width * 4 * 4, 8 * width), nn.BatchNorm1d(8 * width), nn.ReLU())
    return net, 8 * width


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c_in, c_out, stride=stride),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


def resnet18(channels: int, width: int, side: int) -> tuple[nn.Module, int]:
    stem = conv_bn(channels, width) if side <= 32 else nn.Sequential(conv_bn(channels, width, 7, 2), nn.MaxPool2d(3, 2, 1))
    blocks, c_in = [], width
    for stage in range(4):
        c_out = width * 2 ** stage
        blocks += [BasicBlock(c_in, c_out, 2 if stage and not i else 1) for i, c_in in enumerate((c_in, c_out))]
        c_in = c_out
    return nn.Sequential(stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()), c_in


def mlp(inputs: int, width: int) -> tuple[nn.Module, int]:
    net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, width), nn.BatchNorm1d(width), nn.ReLU(),
                        nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU())
    return net, width


class NMM(nn.Module):
    """A backbone and the K-way output layer s(x); forward gives (s, penultimate features)."""

    def __init__(self, backbone: str, shape: tuple[int, ...], width: int, k: int):
        super().__init__()
        if backbone == "conv":
            self.backbone, features = conv_net(shape[0], width)
        elif backbone == "resnet18":
            self.backbone, features = resnet18(shape[0], width, shape[-1])
        else:
            self.backbone, features = mlp(int(np.prod(shape)), width)
        self.head = nn.Linear(features, k)

    def forward(self, x):
        features = self.backbone(x)
        return self.head(features), features


# Augmentations --------------------------------------------------------------------------

def augment(x: torch.Tensor, generator: torch.Generator, config: dict) -> torch.Tensor:
    """One random view of each image of x (B x C x H x W in [0, 1]); see the module docstring."""
    n, colour = len(x), x.shape[1] == 3

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator, device=x.device)
    area = uniform(config["crop_scale_min"], 1.0)
    ratio = uniform(math.log(3 / 4), math.log(4 / 3)).exp()
    width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    centre_x, centre_y = (1 - width) * uniform(-1, 1), (1 - height) * uniform(-1, 1)
    if colour:
        width = torch.where(uniform(0, 1) < 0.5, -width, width)                # horizontal flip
    zero = torch.zeros_like(width)
    theta = torch.stack([torch.stack([width, zero, centre_x], 1), torch.stack([zero, height, centre_y], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False),
                      padding_mode="reflection", align_corners=False)
    if not colour:
        return x
    luma = torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)

    def factor():
        return uniform(1 - config["jitter"], 1 + config["jitter"]).view(n, 1, 1, 1)
    x = (x * factor()).clamp(0, 1)                                              # brightness
    mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (mean + (x - mean) * factor()).clamp(0, 1)                              # contrast
    grey = (x * luma).sum(1, keepdim=True)
    x = (grey + (x - grey) * factor()).clamp(0, 1)                              # saturation
    grey = (x * luma).sum(1, keepdim=True).expand_as(x)
    return torch.where((uniform(0, 1) < config["greyscale_prob"]).view(n, 1, 1, 1), grey, x)


# The method -----------------------------------------------------------------------------

def choose_backbone(config: dict, data: RunData) -> str:
    """The backbone the config names, or for `auto` the one for the data's shape; refused if it does not fit."""
    shape, images = tuple(data.fit.x.shape[1:]), data.dataset.kind == "images"
    name = config["backbone"]
    if name == "auto":
        name = ("mlp" if not images else "conv" if shape == (1, 28, 28) else
                "resnet18" if shape[0] == 3 and min(shape[1:]) >= 32 else None)
        if name is None:
            raise ValueError(f"nmm: backbone auto has no network for images of shape {shape} (dataset "
                             f"'{data.dataset.name}'); name one: {', '.join(BACKBONES[1:])}")
    if name == "conv" and (not images or shape[1:] != (28, 28)):
        raise ValueError(f"nmm: the conv backbone needs C x 28 x 28 images; dataset '{data.dataset.name}' has x of "
                         f"shape {shape}; use backbone: auto")
    if name == "resnet18" and (not images or min(shape[1:]) < 32):
        raise ValueError(f"nmm: the resnet18 backbone needs images of side 32 or more; dataset "
                         f"'{data.dataset.name}' has x of shape {shape}; use backbone: auto")
    return name


def check_config(config: dict, data: RunData) -> None:
    """Every bad setting, named with the valid choices, before anything is built."""
    for key, valid in (("objective", OBJECTIVES), ("backbone", BACKBONES)):
        if config[key] not in valid:
            raise ValueError(f"nmm: unknown {key} '{config[key]}'; valid: {', '.join(valid)}")
    for key in ("width", "epochs", "checkpoint_every"):
        if config[key] < 1:
            raise ValueError(f"nmm: {key} must be at least 1, got {config[key]}")
    if not 2 <= config["batch_size"] <= len(data.fit):
        raise ValueError(f"nmm: batch_size must be between 2 (the densities are normalised over the batch) and "
                         f"the {len(data.fit)} training examples, got {config['batch_size']}")
    for key, low, high in (("crop_scale_min", 0.0, 1.0), ("jitter", 0.0, 1.0), ("greyscale_prob", 0.0, 1.0),
                           ("entropy_weight", 0.0, math.inf)):
        if not low <= config[key] <= high:
            raise ValueError(f"nmm: {key} must lie in [{low}, {high}], got {config[key]}")


class NMMMethod(Method):
    name = "nmm"
    tracks = ("clustering",)
    budget = "epochs"

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_config(config, data)
        backbone = choose_backbone(config, data)
        k = config["k"] or data.dataset.n_classes
        if not k:
            raise ValueError(f"dataset '{data.dataset.name}' has no classes; set k in the method config")
        device, images = run.device, data.dataset.kind == "images"
        shape = tuple(data.fit.x.shape[1:])

        def tensor(split):
            return torch.from_numpy(flat_features(split)).to(device).view(-1, *shape)
        fit_x = tensor(data.fit)
        score_x = fit_x if data.score is data.fit else tensor(data.score)

        training = Training.start(run, lambda: NMM(backbone, shape, config["width"], k), config["lr"])
        model, optimiser, generator, start = training.model, training.optimiser, training.generator, training.epoch

        epochs, batch = config["epochs"], config["batch_size"]
        steps = len(fit_x) // batch
        for epoch in run.progress(range(start + 1, epochs + 1), total=epochs - start, desc="nmm epochs"):
            model.train()
            order = torch.randperm(len(fit_x), generator=generator, device=device)[:steps * batch].view(steps, batch)
            sums, counts = {}, torch.zeros(k, device=device)
            for step, index in enumerate(order):
                x = fit_x[index]
                views = torch.cat([augment(x, generator, config), augment(x, generator, config)] if images else [x, x])
                terms = objective_terms(*model(views)[0].chunk(2), config)
                loss = terms.pop("loss")
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"nmm: loss is {loss.item()} at epoch {epoch}, step {step}")
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                counts += torch.bincount(terms.pop("cluster"), minlength=k)
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach()
            run.log(epoch=epoch, **{name: round(float(s) / steps, 4) for name, s in sums.items()},
                    clusters_used=int((counts > 0).sum()), largest_cluster=round(float(counts.max() / counts.sum()), 4))
            if epoch % config["checkpoint_every"] == 0 or epoch == epochs:
                training.save(run, epoch)

        log_gamma, embedding = readout(model, score_x, config["density_constraint"])
        return {"assignments": log_gamma.argmax(1).cpu().numpy().astype(np.int64),
                "probs": log_gamma.exp().cpu().numpy().astype(np.float32),
                "log_probs": log_gamma.cpu().numpy().astype(np.float32),
                "embedding": embedding.cpu().numpy().astype(np.float32)}


@torch.no_grad()
def readout(model: NMM, x: torch.Tensor, constrained: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-responsibilities with the densities normalised over all of x (as logarithms: the
    most confident responsibilities round to 1), and the penultimate features."""
    model.eval()
    scores, features = (torch.cat(parts) for parts in zip(*(model(chunk) for chunk in x.split(READOUT_BATCH))))
    log_f = log_densities(scores, constrained)
    log_pi, _ = e_step(log_f)
    return (log_pi + log_f).log_softmax(1), features
