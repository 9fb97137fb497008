"""Handwritten digits: scikit-learn's bundled copy of the UCI optical digits (1,797 images).

Not MNIST: 8×8 images with values 0–16, rescaled to [0, 255] and resized (bilinear) to
28×28 so that MNIST-shaped networks run on it unchanged. There is no official split, so the
dataset has one split, "all"."""
from __future__ import annotations

import numpy as np
from PIL import Image

from datasets.base import Dataset

SIDE = 28


class Digits(Dataset):
    name = "digits"
    n_classes = 10
    source = "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, 8x8)"

    def build(self, workdir):
        from sklearn.datasets import load_digits
        bunch = load_digits()
        images = bunch.images.astype(np.float32) * (255.0 / 16.0)
        resized = np.stack([
            np.asarray(Image.fromarray(img, mode="F").resize((SIDE, SIDE), Image.BILINEAR)) for img in images])
        x = np.clip(np.rint(resized), 0, 255).astype(np.uint8)[:, None]
        return {"all": {"x": x, "labels": bunch.target.astype(np.int64)}}
