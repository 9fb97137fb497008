"""Generation metrics (docs/metrics.md): FID and KID through torch-fidelity, and the
clearly named FD[<dataset>-classifier] for offline suites; plus sample grids for figures.

    FID, KID    torch-fidelity's `calculate_metrics` with the `inception-v3-compat` extractor
                (the TF-Inception port every FID paper uses) on uint8 N×3×H×W images. Fewer
                than 2,048 samples per set are refused: below the feature dimension's rank the
                covariance is singular and FID meaningless. The Inception weights are only read
                from disk (torch hub cache or a given path), never fetched.
    FD[...]     the same Fréchet distance on the penultimate features of a small CNN trained on
                the dataset's own labelled images; comparable only with itself, never with FID.

A metric that cannot be computed raises `MetricUnavailable` with the reason; the caller records
it as an unavailable value, never as a number.
"""
from __future__ import annotations

import importlib.metadata
import math
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from PIL import Image
from torch import nn

from common.files import atomic_path, check_recorded, recorded_path
from evaluation.unavailable import MetricUnavailable

MIN_SAMPLES = 2048
EXTRACTOR = "inception-v3-compat"
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000     # torch-fidelity's defaults, recorded in the KID spec
CLASSIFIER_EPOCHS = 5                        # FD[<dataset>-classifier]'s feature network, recorded in its spec


# ---------------------------------------------------------------- the Fréchet distance

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 − mu2|² + tr(sigma1) + tr(sigma2) − 2 tr((sigma1 sigma2)^½)   (Heusel et al. 2017).

    As in the reference implementations, a singular product gets a small ridge, and the tiny
    imaginary part that sqrtm leaves from rounding is discarded; a large one is an error."""
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    with warnings.catch_warnings():   # a singular product is expected (dead features) and handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            ridge = 1e-6 * np.eye(len(sigma1))
            covmean = scipy.linalg.sqrtm((sigma1 + ridge) @ (sigma2 + ridge))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm of the covariance product has an imaginary part up to "
                             f"{np.abs(covmean.imag).max():.3g}: the covariances are not valid (symmetric PSD)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def feature_frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two N×D feature matrices (unbiased covariance)."""
    return frechet_distance(features1.mean(axis=0), np.cov(features1, rowvar=False),
                            features2.mean(axis=0), np.cov(features2, rowvar=False))


# ---------------------------------------------------------------- FID and KID (torch-fidelity)

def fid_kid(generated: np.ndarray, reference: np.ndarray, *, weights: str | Path | None = None,
            batch_size: int = 64) -> dict[str, float]:
    """{"fid", "kid", "kid_std"} of uint8 N×C×H×W generated images against reference images.

    Raises MetricUnavailable when either set has fewer than 2,048 images or when the Inception
    weights are neither at `weights` nor in the torch hub cache (see `inception_weights`)."""
    for name, images in (("generated", generated), ("reference", reference)):
        if len(images) < MIN_SAMPLES:
            raise MetricUnavailable(f"only {len(images)} {name} images: FID/KID need at least {MIN_SAMPLES} "
                                    "(fewer leave the 2048-d feature covariance singular)")
    weights_path = inception_weights(weights)
    import torch_fidelity
    scores = torch_fidelity.calculate_metrics(
        input1=_ImageSet(generated), input2=_ImageSet(reference), fid=True, kid=True,
        feature_extractor=EXTRACTOR, feature_extractor_weights_path=str(weights_path),
        kid_subsets=KID_SUBSETS, kid_subset_size=KID_SUBSET_SIZE,
        batch_size=batch_size, cuda=torch.cuda.is_available(), cache=False, verbose=False,
        save_cpu_ram=True)   # no loader worker processes: the images are in memory already
    return {"fid": float(scores["frechet_inception_distance"]),
            "kid": float(scores["kernel_inception_distance_mean"]),
            "kid_std": float(scores["kernel_inception_distance_std"])}


def fid_kid_spec(metric: str, n_generated: int, reference: str, split: str) -> str:
    """e.g. `fid[torch-fidelity=0.4.0,inception-v3-compat,n=10000,ref=mnist-test]`."""
    protocol = [f"torch-fidelity={importlib.metadata.version('torch-fidelity')}", EXTRACTOR]
    if metric.startswith("kid"):
        protocol.append(f"subsets={KID_SUBSETS}x{KID_SUBSET_SIZE}")
    return f"{metric}[{','.join(protocol + [f'n={n_generated}', f'ref={reference}-{split}'])}]"


def inception_weights(path: str | Path | None = None) -> Path:
    """The Inception weights file: `path` when given, else torch-fidelity's file name in the
    torch hub cache (where its own download would put it). Only the disk is looked at, so an
    offline machine gets MetricUnavailable at once instead of a hanging download."""
    from common.torchvision_compat import import_torchvision
    import_torchvision()   # torch_fidelity imports torchvision, which needs this on a CPU torch
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    file_name = URL_INCEPTION_V3.rsplit("/", 1)[-1]
    candidate = Path(path) if path else Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not candidate.is_file():
        raise MetricUnavailable(f"Inception weights not found at {candidate}: copy {file_name} (torch-fidelity's "
                                f"{URL_INCEPTION_V3}) there, or give its path in the config")
    return candidate


class _ImageSet(torch.utils.data.Dataset):
    """uint8 N×C×H×W images as torch-fidelity takes them: 3×H×W uint8 tensors, grey repeated."""

    def __init__(self, images: np.ndarray):
        self.images = torch.from_numpy(np.array(_checked_images(images)))   # a copy: memory maps are read-only

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def _checked_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be uint8 N×C×H×W with C = 1 or 3, got {images.dtype} {images.shape}: "
                         "convert generated samples with np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)")
    return images


# ---------------------------------------------------------------- FD[<dataset>-classifier]

class SmallCNN(nn.Module):
    """Two conv blocks (8 and 16 channels) and a 128-unit hidden layer, whose activations are the
    features: trains in seconds on 28×28 digits on a CPU."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(16 * 4 * 4, 128), nn.ReLU())
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        return self.head(self.features(x))


def classifier(images: np.ndarray, labels: np.ndarray, cache: str | Path, *, epochs: int = CLASSIFIER_EPOCHS,
               seed: int = 0) -> SmallCNN:
    """The feature network of FD[<dataset>-classifier]: loaded from the state_dict at `cache`
    when there (checked against its sha256 record first), else trained (Adam, lr 3e-3, batch
    64, `epochs` epochs) and saved there with its record. Training is deterministic on CPU for
    a given seed: one torch generator seeds the weights and the batch order."""
    images, labels = _checked_images(images), np.array(labels, dtype=np.int64)
    with torch.random.fork_rng(devices=[]):   # seeded initial weights; the caller's torch RNG is left as it was
        torch.manual_seed(seed)
        model = SmallCNN(images.shape[1], int(labels.max()) + 1)
    cache = Path(cache)
    if cache.is_file():
        check_recorded(cache, f"delete {cache} and the next evaluation trains it again")
        try:
            model.load_state_dict(torch.load(cache, weights_only=True))
        except RuntimeError as error:
            raise ValueError(f"the classifier cached at {cache} does not fit these images and labels ("
                             f"{images.shape[1]} channels, {model.head.out_features} classes): delete it to retrain"
                             ) from error
        return model.eval()
    generator = torch.Generator().manual_seed(seed)
    x, y = _as_float(images), torch.from_numpy(labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    with recorded_path(cache) as tmp:                # with its sha256, checked before it is loaded
        torch.save(model.state_dict(), tmp)
    return model.eval()


@torch.no_grad()
def classifier_features(model: SmallCNN, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """N×128 penultimate-layer activations of uint8 images."""
    model.eval()
    x = _as_float(_checked_images(images))
    return torch.cat([model.features(chunk) for chunk in x.split(batch_size)]).double().numpy()


def classifier_fd(model: SmallCNN, generated: np.ndarray, reference: np.ndarray) -> float:
    """FD[<dataset>-classifier]: Fréchet distance of the classifier features of two image sets."""
    return feature_frechet_distance(classifier_features(model, generated), classifier_features(model, reference))


def classifier_fd_spec(dataset: str, n_generated: int, reference: str, split: str, *, epochs: int = CLASSIFIER_EPOCHS,
                       seed: int = 0) -> str:
    """e.g. `fd[digits-classifier,epochs=5,seed=0,n=1797,ref=digits-all]`: the classifier is
    part of the protocol, so its training settings are too."""
    return f"fd[{dataset}-classifier,epochs={epochs},seed={seed},n={n_generated},ref={reference}-{split}]"


def _as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(images, dtype=np.float32)) / 255.0


# ---------------------------------------------------------------- figures

def sample_grid(images: np.ndarray, path: str | Path, nrow: int = 8, padding: int = 2) -> None:
    """Write uint8 N×C×H×W images as one PNG grid, `nrow` images per row, on black padding."""
    images = _checked_images(images)
    n, channels, height, width = images.shape
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (height + padding) + padding, nrow * (width + padding) + padding, channels), np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // nrow) * (height + padding), padding + (i % nrow) * (width + padding)
        grid[top:top + height, left:left + width] = image.transpose(1, 2, 0)
    with atomic_path(path) as tmp:
        Image.fromarray(grid[..., 0] if channels == 1 else grid).save(tmp, format="PNG")
