"""The EncDiff denoiser: an LDM-style ("openaimodel") UNet conditioned by cross-attention on a
set of context tokens, with optional Skip Dropout (Jun et al., arXiv 2410.23820).

Spec: docs/methods/dyga.md, "Base model (EncDiff-style)" and "Skip Dropout". Written from
the spec and from reading the authors' code (youngjun-jun/dis-dis, openaimodel_skip-dropout.py
on LDM's attention.py) for facts; not copied from it.

    unet = AttentionUNet(in_channels=3, out_channels=3, model_channels=64, channel_mult=(1, 2, 4, 4),
                         num_res_blocks=2, attention_resolutions=(1, 2, 4), context_dim=32,
                         num_heads=8, dropout=0.1, skip_dropout=0.2)      # the paper's, 16x16x3 latent
    eps = unet(x_t, t, tokens)    # (B, 3, 16, 16) from (B, 3, 16, 16), (B,) long, (B, 20, 32)

What the spec fixes, as built here (paper values in brackets):
- Sinusoidal timestep embedding of width model_channels (cos half first, then sin, max period
  10000), then Linear -> SiLU -> Linear to 4 * model_channels.
- Input conv 3x3; per level `num_res_blocks` ResBlocks [2] to model_channels * mult
  [64 x (1, 2, 4, 4)], each followed by a spatial transformer when the level's downsampling
  factor is in `attention_resolutions` [(1, 2, 4)]; between levels a ResBlock that
  downsamples (`resblock_updown`, average pool) [True]. Middle: ResBlock, spatial transformer,
  ResBlock (the middle always attends, as in LDM). Output side: per level num_res_blocks + 1
  ResBlocks, each on the concatenation of the hidden state and one skip (popped last-in
  first-out), a transformer at the attention factors, and an upsampling ResBlock (nearest x2)
  ending every level but the last. Output: GroupNorm, SiLU, zero-initialised conv 3x3.
- ResBlock: GroupNorm, SiLU, conv 3x3; the timestep embedding through SiLU + Linear gives a
  scale and shift applied after the second GroupNorm, h = norm(h) * (1 + scale) + shift
  (`use_scale_shift_norm`) [True]; SiLU, dropout [0.1], zero-initialised conv 3x3; residual
  through identity, or a 1x1 conv when the width changes.
- Spatial transformer (depth 1): GroupNorm (eps 1e-6), 1x1 conv in, then on the (h w) tokens:
  x += self-attn(LN(x)); x += cross-attn(LN(x), context); x += FF(LN(x)) with a GEGLU
  feed-forward of 4x width; zero-initialised 1x1 conv out; residual. Heads = num_heads [8],
  head width = channels // num_heads; q, k, v projections without bias; no dropout inside
  (LDM's UNet does not pass its dropout to the transformers).
- Skip Dropout (`skip_dropout` = p [0.2], 0 = off and no module at all): in training, each
  sample's skip tensor has whole channels zeroed with probability p and the rest scaled by
  1/(1-p), before the concatenation; nothing in eval mode. It applies to the skips whose
  spatial width is >= `skip_dropout_min_resolution` [8]: on the paper's 16x16 latent the 16-
  and 8-wide skips, exactly those the official code's rule (width not in the attention
  factors (1, 2, 4)) drops; see `AttentionUNet.drops_skip`. Masks come from torch's global
  RNG (the method seeds and checkpoints it).

Deviations and choices:
- GroupNorm uses gcd(32, channels) groups: 32 as in LDM whenever channels are a multiple of 32
  (every paper width), fewer for narrow configs (e.g. 16 groups for 48 channels), where LDM
  would fail.
- Attention uses torch's scaled_dot_product_attention (same arithmetic as LDM's einsum form,
  softmax(q k^T / sqrt(d)) v, up to rounding); under bf16 on a CPU it computes in fp32
  (methods/nets/precision.py: torch's bf16 kernel there is several times slower).
- No gradient checkpointing, fp16 conversion, class labels or codebook-id head (LDM options
  the spec's model does not use). The forward returns the tensor, not LDM's wrapper.
- With resblock_updown=False, the resampling is LDM's conv_resample form (stride-2 conv 3x3
  down, nearest x2 + conv 3x3 up).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods.nets.precision import attention


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) -> (B, dim): [cos(t f), sin(t f)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))  # an odd width gets a zero column, as in LDM


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    # 32 groups as in LDM when the width allows it; narrow widths (16, 48, ...) get fewer.
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=eps)


def zero_init(module: nn.Module) -> nn.Module:
    # Zeroed last layers make every residual branch start as the identity.
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SkipDropout(nn.Module):
    """Channel dropout for a UNet skip tensor (B, C, H, W): in training, each (sample, channel)
    is zeroed with probability p and the kept ones are scaled by 1/(1-p), so the expectation is
    the input; identity in eval mode. Draws come from torch's global RNG unless a generator is
    given (its device must be the input's)."""

    def __init__(self, p: float, generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"skip dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        u = torch.rand(x.shape[0], x.shape[1], *([1] * (x.dim() - 2)),
                       device=x.device, dtype=x.dtype, generator=self.generator)
        return x * (u >= self.p).to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def resample(x: torch.Tensor, how: str) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest") if how == "up" else F.avg_pool2d(x, 2)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, timestep FiLM (scale-shift), GroupNorm-SiLU-dropout-conv(0), residual;
    optionally halving (down) or doubling (up) the resolution on both paths."""

    def __init__(self, channels: int, emb_dim: int, dropout: float, out_channels: int | None = None,
                 scale_shift: bool = True, up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.scale_shift = scale_shift
        self.norm1 = group_norm(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.updown = "up" if up else "down" if down else None
        self.emb = nn.Linear(emb_dim, 2 * out_channels if scale_shift else out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(x))
        if self.updown:  # resample after the activation, before the conv, as LDM
            h, x = resample(h, self.updown), resample(x, self.updown)
        h = self.conv1(h)
        e = self.emb(F.silu(emb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention of x's tokens (B, N, dim) to context tokens (B, M, context_dim);
    self-attention when context is None."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.q = nn.Linear(dim, inner, bias=False)
        self.k = nn.Linear(context_dim or dim, inner, bias=False)
        self.v = nn.Linear(context_dim or dim, inner, bias=False)
        self.out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        B, N, _ = x.shape

        def split(t):  # (B, n, heads * d) -> (B, heads, n, d)
            return t.view(B, t.shape[1], self.heads, -1).transpose(1, 2)

        h = attention(split(self.q(x)), split(self.k(context)), split(self.v(context)))
        return self.out(h.transpose(1, 2).reshape(B, N, -1))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class SpatialTransformer(nn.Module):
    """LDM's depth-1 spatial transformer: norm, 1x1 in, [self-attn, cross-attn, GEGLU FF] with
    pre-LayerNorms and residuals on the h*w tokens, zero-initialised 1x1 out, residual."""

    def __init__(self, channels: int, heads: int, context_dim: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.norm = group_norm(channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(channels), nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.self_attn = Attention(channels, heads, channels // heads)
        self.cross_attn = Attention(channels, heads, channels // heads, context_dim)
        self.ff = nn.Sequential(GEGLU(channels, 4 * channels), nn.Linear(4 * channels, channels))
        self.proj_out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # (B, H*W, C)
        h = h + self.self_attn(self.ln1(h))
        h = h + self.cross_attn(self.ln2(h), context)
        h = h + self.ff(self.ln3(h))
        return x + self.proj_out(h.transpose(1, 2).reshape(B, C, H, W))


class Block(nn.ModuleList):
    """A sequence of layers; ResBlocks get the timestep embedding, transformers the context."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):  # for resblock_updown=False
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class AttentionUNet(nn.Module):
    """The denoising UNet; see the module docstring. forward(x, timesteps, context) -> the
    prediction, shaped like x with out_channels channels. H and W must be divisible by
    2 ** (len(channel_mult) - 1)."""

    def __init__(self, *, in_channels: int, out_channels: int, model_channels: int,
                 channel_mult=(1, 2, 4, 4), num_res_blocks: int = 2, attention_resolutions=(1, 2, 4),
                 context_dim: int = 32, num_heads: int = 8, dropout: float = 0.1,
                 use_scale_shift_norm: bool = True, resblock_updown: bool = True,
                 skip_dropout: float = 0.0, skip_dropout_min_resolution: int = 8):
        super().__init__()
        self.model_channels = model_channels
        self.attention_resolutions = tuple(attention_resolutions)
        self.levels = len(channel_mult)
        self.skip_dropout_min_resolution = skip_dropout_min_resolution
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(ch_in, ch_out=None, **kw):
            return ResBlock(ch_in, emb_dim, dropout, ch_out, scale_shift=use_scale_shift_norm, **kw)

        def attn(ch):
            return SpatialTransformer(ch, num_heads, context_dim)

        # Encoder side; `skip_ch` records the width of every output that is kept as a skip.
        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(in_channels, model_channels, 3, padding=1)])])
        skip_ch, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if ds in self.attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(Block(layers))
                skip_ch.append(ch)
            if level != self.levels - 1:
                down = res(ch, down=True) if resblock_updown else nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                self.input_blocks.append(Block([down]))
                skip_ch.append(ch)
                ds *= 2

        self.middle_block = Block([res(ch), attn(ch), res(ch)])

        # Decoder side: one skip per block, consumed in reverse order.
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_ch.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in self.attention_resolutions:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, up=True) if resblock_updown else Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Block(layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, out_channels, 3, padding=1)))
        # p = 0: no module at all, so the network is exactly the plain EncDiff UNet.
        self.skip_dropout = SkipDropout(skip_dropout) if skip_dropout > 0 else None

    def drops_skip(self, width: int) -> bool:
        """Whether Skip Dropout applies to a skip of this spatial width.

        The spec's rule is width >= skip_dropout_min_resolution (8). The official code drops
        when `width not in attention_resolutions` (a width compared with downsampling factors,
        (1, 2, 4)); on the paper's 16x16 latent the skip widths are 16, 8, 4 and 2, and both
        rules drop exactly the 16- and 8-wide skips. (On 32x32 inputs with attention at (2, 4)
        both drop the 32-, 16- and 8-wide ones.)"""
        return self.skip_dropout is not None and width >= self.skip_dropout_min_resolution

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        h, skips = x, []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            s = skips.pop()
            if self.drops_skip(s.shape[-1]):
                s = self.skip_dropout(s)
            h = block(torch.cat([h, s], dim=1), emb, context)
        return self.out(h)
