"""The small conditional UNet of ClusterDDPM's MNIST code, and its encoder.

Spec: docs/methods/clusterddpm.md ("Architecture"). Width n_feat; two resolutions below
the input (side -> side/2 -> side/4 by max-pooling) and a bottleneck vector (average pool
over the side/4 grid). The time t/T and the condition z are each embedded by a two-layer MLP
(linear-GELU-linear) to 2 n_feat and n_feat; every level of the up path is modulated as
`cond_emb * h + time_emb` before its skip is concatenated. The encoder is the same down path
with two linear heads, the mean and log-variance of q(z|x).

The image side must be divisible by 4 (28 for MNIST and digits, 32 for CIFAR/STL resized).
"""
from __future__ import annotations

import torch
from torch import nn


class ResidualConvBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and GELU; with `residual`, the input (or the first
    convolution's output when the widths differ) is added back and the sum scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False):
        super().__init__()
        self.residual, self.same_width = residual, in_channels == out_channels
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU())
        self.conv2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.conv1(x)
        h2 = self.conv2(h1)
        if not self.residual:
            return h2
        return ((x if self.same_width else h1) + h2) / 1.414


def embed_mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


class DownPath(nn.Module):
    """Image -> (the two skips, the bottleneck vector of 2 n_feat)."""

    def __init__(self, channels: int, n_feat: int, side: int):
        super().__init__()
        if side % 4:
            raise ValueError(f"the ClusterDDPM UNet needs an image side divisible by 4, got {side}")
        self.stem = ResidualConvBlock(channels, n_feat, residual=True)
        self.down1 = nn.Sequential(ResidualConvBlock(n_feat, n_feat), nn.MaxPool2d(2))
        self.down2 = nn.Sequential(ResidualConvBlock(n_feat, 2 * n_feat), nn.MaxPool2d(2))
        self.to_vector = nn.Sequential(nn.AvgPool2d(side // 4), nn.GELU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        stem = self.stem(x)
        d1 = self.down1(stem)
        d2 = self.down2(d1)
        return stem, d1, d2, self.to_vector(d2)


class Encoder(nn.Module):
    """q(z|x) = N(mu(x), diag exp(logvar(x)))."""

    def __init__(self, channels: int, side: int, n_feat: int, z_dim: int):
        super().__init__()
        self.down = DownPath(channels, n_feat, side)
        self.mu = nn.Linear(2 * n_feat, z_dim)
        self.logvar = nn.Linear(2 * n_feat, z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.down(x)[-1].flatten(1)
        return self.mu(h), self.logvar(h)


class UpStep(nn.Module):
    """Double the side with a 2x2 transposed convolution, then two residual conv blocks."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2, 2),
                                    ResidualConvBlock(out_channels, out_channels),
                                    ResidualConvBlock(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([x, skip], 1))


class ContextUNet(nn.Module):
    """eps(x_t, z, t/T): predicted noise, same shape as x_t. z = 0 is the null condition."""

    def __init__(self, channels: int, side: int, n_feat: int, z_dim: int):
        super().__init__()
        self.down = DownPath(channels, n_feat, side)
        self.time1, self.time2 = embed_mlp(1, 2 * n_feat), embed_mlp(1, n_feat)
        self.cond1, self.cond2 = embed_mlp(z_dim, 2 * n_feat), embed_mlp(z_dim, n_feat)
        self.up0 = nn.Sequential(nn.ConvTranspose2d(2 * n_feat, 2 * n_feat, side // 4, side // 4),
                                 nn.GroupNorm(8, 2 * n_feat), nn.ReLU())
        self.up1 = UpStep(4 * n_feat, n_feat)
        self.up2 = UpStep(2 * n_feat, n_feat)
        self.out = nn.Sequential(nn.Conv2d(2 * n_feat, n_feat, 3, 1, 1), nn.GroupNorm(8, n_feat), nn.ReLU(),
                                 nn.Conv2d(n_feat, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor, t_fraction: torch.Tensor) -> torch.Tensor:
        stem, d1, d2, vector = self.down(x)
        t = t_fraction.view(-1, 1)
        t1, t2 = self.time1(t)[..., None, None], self.time2(t)[..., None, None]
        c1, c2 = self.cond1(z)[..., None, None], self.cond2(z)[..., None, None]
        h = self.up0(vector)
        h = self.up1(c1 * h + t1, d2)
        h = self.up2(c2 * h + t2, d1)
        return self.out(torch.cat([h, stem], 1))
