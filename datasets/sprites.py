"""Sprites: our own dSprites-like images with known factors, rendered in NumPy (offline).

Not dSprites: 11,520 grey 32×32 images of one shape each, every combination of five
factors exactly once, in factor order (image i has the factors
np.unravel_index(i, FACTOR_SIZES)):

    shape        3   square, ellipse (2:1), heart
    scale        6   0.5 to 1 of a 12-pixel object
    orientation 10   0 to 2π in steps of 2π/10 (as in dSprites, the square repeats every
                     quarter turn and the ellipse every half turn: some images coincide)
    x, y      8, 8   object centre from 8.5 to 23.5 pixels, so that every object fits

Pixels are anti-aliased: each is the share of its 4×4 sub-samples inside the shape,
scaled to 0–255 with integer arithmetic. `render` draws one image from its factor values
and is the only drawing code, so re-rendering any image from its factors gives exactly
its pixels."""
from __future__ import annotations

import math

import numpy as np

from common.progress import progress
from datasets.base import Dataset

SIDE, SUPER, OBJECT = 32, 4, 12.0
FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
FACTOR_SIZES = (3, 6, 10, 8, 8)
SCALES = np.linspace(0.5, 1.0, FACTOR_SIZES[1])
MARGIN = OBJECT * math.sqrt(2) / 2          # the largest object's half diagonal
POSITIONS = np.linspace(MARGIN, SIDE - MARGIN, FACTOR_SIZES[3])

_samples = (np.arange(SIDE * SUPER) + 0.5) / SUPER          # sub-sample coordinates in pixels
_SUB_Y, _SUB_X = np.meshgrid(_samples, _samples, indexing="ij")


def _square(u, v):
    return (np.abs(u) <= 0.5) & (np.abs(v) <= 0.5)


def _ellipse(u, v):
    return (2 * u) * (2 * u) + (4 * v) * (4 * v) <= 1


def _heart(u, v):
    """The curve (p² + q² − 1)³ = p² q³, its point down, fitted into the unit square."""
    p, q = 2.24 * u, 0.12 - 2.24 * v
    r = p * p + q * q - 1
    return r * r * r - p * p * q * q * q <= 0


SHAPES = (_square, _ellipse, _heart)


def render(shape: int, scale: int, orientation: int, x: int, y: int) -> np.ndarray:
    """The 1×32×32 uint8 image of the given factor values (indices)."""
    angle = 2 * math.pi * orientation / FACTOR_SIZES[2]
    cos, sin, size = math.cos(angle), math.sin(angle), OBJECT * float(SCALES[scale])
    dx, dy = _SUB_X - POSITIONS[x], _SUB_Y - POSITIONS[y]
    u, v = (cos * dx + sin * dy) / size, (cos * dy - sin * dx) / size
    inside = SHAPES[shape](u, v).reshape(SIDE, SUPER, SIDE, SUPER).sum(axis=(1, 3))
    return ((inside * 255 + SUPER * SUPER // 2) // (SUPER * SUPER)).astype(np.uint8)[None]


class Sprites(Dataset):
    name = "sprites"
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    source = "generated: datasets/sprites.py (deterministic NumPy rasteriser, dSprites-like)"

    def build(self, workdir):
        factors = np.stack(np.unravel_index(np.arange(math.prod(FACTOR_SIZES)), FACTOR_SIZES), axis=1)
        x = np.stack([render(*row) for row in progress(factors.tolist(), desc="rendering sprites")])
        return {"all": {"x": x, "factors": factors.astype(np.int64)}}
