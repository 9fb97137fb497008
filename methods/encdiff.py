"""EncDiff with Skip Dropout and Dynamic Gaussian Anchoring (Jun et al., arXiv 2410.23820, WACV 2025).

    python -m bench run --suite quick --dataset sprites --method encdiff --variant quick+sd+dyga --seed 0
    python -m bench run --suite paper --dataset shapes3d --method encdiff --variant encdiff+sd+dyga --seed 0

Spec: ../shared/specs/dyga.md. Written from the spec; the authors' code (youngjun-jun/dis-dis)
was read for facts only.

The base model (EncDiff): an image encoder (methods/nets/encdiff_encoder.py) gives `units`
scalars, each lifted by its own MLP to a `token_dim` token; the tokens condition a denoising
UNet (methods/nets/attention_unet.py) through cross-attention. Diffusion over T = `steps`
with the sqrt-linear ("linear" in latent diffusion's code) beta schedule, eps-prediction,
L1 loss averaged over elements, AdamW, an EMA of the weights (encoder and UNet) used for
every output.

Where the UNet works (`space`):
- `vq` (the paper): a VQ autoencoder (methods/nets/vq_autoencoder.py, settings `vq_*`) maps
  the images to 16 x 16 x 3 latents, scaled by 1 / std of a batch of latents. It is trained
  once per dataset and configuration and cached beside the dataset
  (data/<dataset>/first_stage/vq-<hash>.pt, written atomically; a later run, or another
  variant, loads it): the first stage is shared by every variant and seed.
- `pixels` (ours, for CPU runs): the images themselves in [-1, 1], folded space-to-depth by
  `fold` (2: 32 x 32 x C -> 16 x 16 x 4C, an invertible rearrangement, no learned stage) so
  that the narrow UNet runs at 16 x 16. The encoder always sees the unfolded image.

Skip Dropout (`skip_dropout` p > 0): channel dropout on the UNet's skips at resolution >= 8
(training only); see attention_unet.py for the equivalence to the official rule.

Dynamic Gaussian Anchoring (`dyga`): after every epoch from the second on (the first epoch
trains without anchoring, and so does the second: its mixtures are fitted at its end), the
tokens of the whole fit split (EMA-free current encoder, eval mode) are fitted by per-unit
full-covariance mixtures (methods/nets/gaussian_anchoring.py, settings `dyga_*`); in every
training forward pass after that, tokens are anchored: c <- lambda c_q + (1 - lambda) c. The
mixtures are saved with the checkpoint.

Outputs about the score split (EMA weights, eval mode):
- embedding: per unit, the first principal component of its tokens over the split -> one
  number per unit (the spec's representation for the disentanglement metrics);
- samples: `n_samples` images by DDIM (`ddim_steps`, eta 0), each conditioned on the tokens
  of a random image of the split (the paper's FID protocol, 50,000 samples);
- traversals: the latent-interchange figure: row u holds `interchange_pairs` images decoded
  (DDIM from one shared x_T) from the tokens of an image A_i with unit u taken from image B_i.

Determinism: weights initialised under run.seed; every draw of the loop (batches, t, noise,
the anchoring fits, samples) from one torch.Generator seeded with run.seed; dropout and Skip
Dropout draw from torch's global generator, seeded with run.seed at the start and saved in
every checkpoint with the EMA weights and the mixtures, so a resumed run equals an
uninterrupted one on CPU.

Deviations and readings, all ours:
- The first stage is trained with L1 + codebook losses (no perceptual or GAN loss: see
  vq_autoencoder.py); the pixel space, `fold`, and every quick/smoke setting (widths, T,
  epochs, learning rate, units, token size, DyGA's subsample) are CPU settings.
- Training runs `epochs` epochs of `steps_per_epoch` batches (0: a full pass over the split;
  fewer: a random part of it each epoch, for CPU runs); the mixtures are refitted after each.
- lambda as the spec writes it, on tokens in token space (gaussian_anchoring.py): the
  encoder's token MLPs end in a ReLU, so many token entries are exactly 0, the relative
  distance |(c - c_q) / (c + 1e-6)| is then ~1e6 there, and lambda is ~0: on our CPU runs
  anchoring barely moves the tokens (the log's `anchoring_lambda`). Reported, not altered.
- The samples and the interchange figure use DDIM from the EMA model; the paper's FID
  protocol is followed for the samples, the figure's layout is ours.
"""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common.files import check_recorded, recorded_path
from methods.base import Method, RunContext, RunData, Training
from methods.nets.attention_unet import AttentionUNet
from methods.nets.diffusion import EMA, NoiseSchedule, ddim_sample
from methods.nets.encdiff_encoder import EncDiffEncoder
from methods.nets.gaussian_anchoring import AnchoringSettings, GaussianAnchors
from methods.nets.vq_autoencoder import KEYS as VQ_KEYS, VQAutoencoder, train_vq_autoencoder

SPACES = ("vq", "pixels")
READOUT_BATCH = 500


class EncDiff(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], latent_channels: int, config: dict):
        super().__init__()
        channels, side, _ = image_shape
        self.encoder = EncDiffEncoder(in_channels=channels, image_size=side, width=config["encoder_width"],
                                      n_units=config["units"], fc_hidden=tuple(config["encoder_fc_hidden"]),
                                      token_hidden=tuple(config["token_hidden"]), token_dim=config["token_dim"])
        self.unet = AttentionUNet(in_channels=latent_channels, out_channels=latent_channels,
                                  model_channels=config["model_channels"], channel_mult=tuple(config["channel_mult"]),
                                  num_res_blocks=config["res_blocks"],
                                  attention_resolutions=tuple(config["attention_resolutions"]),
                                  context_dim=config["token_dim"], num_heads=config["heads"], dropout=config["dropout"],
                                  skip_dropout=config["skip_dropout"])

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)[1]


# Where the UNet works ------------------------------------------------------------------------

class PixelSpace:
    """Images in [-1, 1], folded space-to-depth by `fold`."""

    def __init__(self, fold: int):
        self.fold = fold

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(images, self.fold) if self.fold > 1 else images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latents, self.fold) if self.fold > 1 else latents


class VQSpace:
    """The cached VQ autoencoder's scaled latents."""

    def __init__(self, model: VQAutoencoder):
        self.model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode(images) * self.model.scale_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latents / self.model.scale_factor)


def first_stage(data: RunData, config: dict, run: RunContext) -> VQSpace:
    """The VQ autoencoder of this dataset and configuration, shared by every variant and seed
    of the method on the dataset: loaded from results/<suite>/<dataset>/encdiff/first_stage/,
    or trained on the fit split and cached there (weights only, written atomically with its
    sha256, checked against it, loaded weights_only). Its seed comes from its settings, not the
    run, so whichever run trains it trains the same one."""
    settings = {key: config["vq_" + key] for key in VQ_KEYS}
    digest = hashlib.sha256(json.dumps([data.dataset.name, settings], sort_keys=True).encode()).hexdigest()
    stage_dir = run.dir.parent.parent / "first_stage" / f"vq-{digest[:12]}"
    cache = stage_dir / "autoencoder.pt"
    if cache.exists():
        check_recorded(cache, f"delete {stage_dir} and the next run trains it again")
        with torch.random.fork_rng(devices=[]):
            model = VQAutoencoder(settings)
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        print(f"first stage: loaded {cache}", file=sys.stderr, flush=True)
        return VQSpace(model.to(run.device))
    stage_dir.mkdir(parents=True, exist_ok=True)
    stage_run = RunContext(stage_dir, int(digest[:8], 16), run.device_setting, digest, run.precision)
    model = train_vq_autoencoder(np.asarray(data.fit.x), config, stage_run)
    with recorded_path(cache) as tmp:                            # with its sha256, checked at every load
        torch.save(model.state_dict(), tmp)
    return VQSpace(model)


# The method -------------------------------------------------------------------------------

POSITIVE = ("units", "token_dim", "encoder_width", "model_channels", "res_blocks", "heads", "steps", "batch_size",
            "epochs", "ddim_steps", "sample_batch", "interchange_pairs", "checkpoint_every", "fold")


def check_config(config: dict, data: RunData) -> None:
    """Every bad setting, named, before anything is built."""
    for key in POSITIVE:
        if config[key] < 1:
            raise ValueError(f"encdiff: {key} must be at least 1, got {config[key]}")
    if config["space"] not in SPACES:
        raise ValueError(f"encdiff: unknown space '{config['space']}'; valid: {', '.join(SPACES)}")
    if not 0 <= config["skip_dropout"] < 1 or not 0 <= config["dropout"] < 1:
        raise ValueError("encdiff: skip_dropout and dropout must lie in [0, 1)")
    if config["n_samples"] < 0 or config["steps_per_epoch"] < 0 or config["lr"] <= 0 or not 0 <= config["ema_decay"] < 1:
        raise ValueError("encdiff: n_samples and steps_per_epoch must be at least 0, lr positive, ema_decay in [0, 1)")
    NoiseSchedule.named(config["schedule"], config["steps"], config["beta_start"],
                        config["beta_end"]).check_ends_in_noise("encdiff")
    if data.dataset.kind != "images":
        raise ValueError(f"encdiff: needs images; dataset '{data.dataset.name}' holds points")
    _, height, width = data.fit.x.shape[1:]
    if height != width or height % 16:
        raise ValueError(f"encdiff: needs square images with a side divisible by 16; dataset "
                         f"'{data.dataset.name}' has {tuple(data.fit.x.shape[1:])}")
    if config["space"] == "pixels" and height % (config["fold"] * 2 ** (len(config["channel_mult"]) - 1)):
        raise ValueError(f"encdiff: side {height} / fold {config['fold']} is not divisible by the UNet's "
                         f"{2 ** (len(config['channel_mult']) - 1)}")
    if config["space"] == "vq" and data.fit.x.shape[1] != 3:
        raise ValueError(f"encdiff: the VQ first stage needs RGB images; dataset '{data.dataset.name}' has "
                         f"{data.fit.x.shape[1]} channel(s); use space: pixels")
    if config["batch_size"] > len(data.fit):
        raise ValueError(f"encdiff: batch_size {config['batch_size']} is larger than the {len(data.fit)} training images")
    AnchoringSettings.from_config(config)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return np.rint(((images.clamp(-1, 1) + 1) * 127.5).cpu().numpy()).astype(np.uint8)


class EncDiffMethod(Method):
    name = "encdiff"
    tracks = ("disentanglement", "generation")

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_config(config, data)
        device = run.device
        images = torch.tensor(np.asarray(data.fit.x), device=device)            # uint8, batched by index
        space = first_stage(data, config, run) if config["space"] == "vq" else PixelSpace(config["fold"])
        latent_channels = space.encode(to_signed(images[:1])).shape[1]
        schedule = NoiseSchedule.named(config["schedule"], config["steps"], config["beta_start"], config["beta_end"])
        training = Training.start(run, lambda: EncDiff(tuple(images.shape[1:]), latent_channels, config), config["lr"],
                                  torch.optim.AdamW)
        model, optimiser, generator = training.model, training.optimiser, training.generator
        ema = EMA(model, config["ema_decay"])
        anchors, settings = None, AnchoringSettings.from_config(config)
        if training.extra:
            ema.load_state_dict(training.extra["ema"])
            torch.set_rng_state(training.extra["torch_rng"])
            anchors = GaussianAnchors.from_state_dict(training.extra["anchors"]).to(device) if "anchors" in training.extra else None
        else:
            torch.manual_seed(run.seed)                                           # dropout and Skip Dropout

        batch, n = config["batch_size"], len(images)
        steps = min(n // batch, config["steps_per_epoch"] or n)
        for epoch in run.progress(range(training.epoch + 1, config["epochs"] + 1),
                                  total=config["epochs"] - training.epoch, desc="encdiff epochs"):
            model.train()
            order = torch.randperm(n, generator=generator, device=device)[:steps * batch].view(steps, batch)
            sums = torch.zeros(2, device=device)
            for step, index in enumerate(order):
                x = to_signed(images[index])
                with run.autocast():
                    tokens = model.tokens(x)
                    lam = torch.zeros((), device=device)
                    if anchors is not None:
                        tokens, lam = anchors.anchor(tokens)
                    latents = space.encode(x)
                    t = schedule.random_timesteps(batch, generator)
                    noise = torch.randn(latents.shape, generator=generator, device=device)
                    loss = (model.unet(schedule.add_noise(latents, t, noise), t, tokens).float() - noise).abs().mean()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"encdiff: loss is {loss.item()} at epoch {epoch}, step {step}")
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                ema.update(model)
                sums += torch.stack([loss.detach(), lam.detach().float()])
            if config["dyga"] and epoch >= 2:
                anchors = GaussianAnchors.fit(self.tokens(model, images), generator, settings)
            loss_mean, lam_mean = (sums / steps).tolist()
            run.log(epoch=epoch, loss=round(loss_mean, 6), anchoring_lambda=round(lam_mean, 6),
                    components=("" if anchors is None else round(float(anchors.n_components.float().mean()), 2)))
            if epoch % config["checkpoint_every"] == 0 or epoch == config["epochs"]:
                extra = {"ema": ema.state_dict(), "torch_rng": torch.get_rng_state()}
                if anchors is not None:
                    extra["anchors"] = anchors.state_dict()
                training.save(run, epoch, extra)

        ema.copy_to(model)
        model.eval()
        return self.readout(model, space, schedule, data, config, generator)

    @staticmethod
    @torch.no_grad()
    def tokens(model: EncDiff, images: torch.Tensor) -> torch.Tensor:
        """Tokens of uint8 images (N, units, token_dim), in eval mode."""
        was_training = model.training
        model.eval()
        tokens = torch.cat([model.tokens(to_signed(chunk)) for chunk in images.split(READOUT_BATCH)])
        model.train(was_training)
        return tokens

    def readout(self, model: EncDiff, space, schedule: NoiseSchedule, data: RunData, config: dict,
                generator: torch.Generator) -> dict[str, np.ndarray]:
        device = generator.device
        images = torch.tensor(np.asarray(data.score.x), device=device)
        tokens = self.tokens(model, images)
        outputs = {"embedding": unit_components(tokens).cpu().numpy().astype(np.float32)}
        shape = space.encode(to_signed(images[:1])).shape[1:]

        def decode(context: torch.Tensor, noise_generator: torch.Generator) -> torch.Tensor:
            eps = lambda x, t: model.unet(x, t, context)  # noqa: E731
            latents = ddim_sample(eps, schedule, (len(context), *shape), noise_generator, steps=config["ddim_steps"])
            return space.decode(latents)

        if config["n_samples"]:
            pick = torch.randint(0, len(images), (config["n_samples"],), generator=generator, device=device)
            outputs["samples"] = np.concatenate([to_uint8(decode(tokens[chunk], generator))
                                                 for chunk in pick.split(config["sample_batch"])])
        pairs = torch.randperm(len(images), generator=generator, device=device)[:2 * config["interchange_pairs"]]
        first, second = tokens[pairs[0::2]], tokens[pairs[1::2]]
        rows = []
        noise_seed = int(torch.randint(2**62, (1,), generator=generator, device=device))
        for unit in range(tokens.shape[1]):
            swapped = first.clone()
            swapped[:, unit] = second[:, unit]
            shared = torch.Generator(device=device).manual_seed(noise_seed)         # one x_T for every row
            rows.append(to_uint8(decode(swapped, shared)))
        outputs["traversals"] = np.stack(rows)
        return outputs


def unit_components(tokens: torch.Tensor) -> torch.Tensor:
    """Per unit, the projection of its tokens on their first principal component: (N, units).
    The sign is fixed so that the component's largest loading is positive."""
    centred = tokens.double() - tokens.double().mean(0)
    codes = []
    for unit in range(tokens.shape[1]):
        direction = torch.linalg.svd(centred[:, unit], full_matrices=False).Vh[0]
        direction = direction * direction[direction.abs().argmax()].sign()
        codes.append(centred[:, unit] @ direction)
    return torch.stack(codes, 1)
