"""EncDiff with Skip Dropout and Dynamic Gaussian Anchoring (Jun et al., arXiv 2410.23820, WACV 2025).

    python -m bench run --suite quick --dataset sprites --method encdiff --variant quick+sd+dyga --seed 0
    python -m bench run --suite paper --dataset shapes3d --method encdiff --variant encdiff+sd+dyga --seed 0

Spec: docs/methods/dyga.md (with its corrections from the official code). The authors' code
(youngjun-jun/dis-dis, `ldm/models/diffusion/ddpm_dyga.py`, `ldm/modules/gaussian/DyGA.py`,
`configs/`) was read for facts only; where the paper and the code disagree, the paper variants
follow the code.

The base model (EncDiff): an image encoder (methods/nets/encdiff_encoder.py) gives `units`
scalars, each lifted by its own MLP to a `token_dim` token; the tokens condition a denoising
UNet (methods/nets/attention_unet.py) through cross-attention. Diffusion over T = `steps`
with the sqrt-linear ("linear" in latent diffusion's code) beta schedule 0.0015 -> 0.0155 and
batch 512 of DyGA's released configs for all four paper variants (EncDiff's own paper states a
cosine schedule and batch 64; its released configs, linear and batch 128), eps-prediction, L1
loss averaged over elements, AdamW with the encoder trained jointly, and an EMA of the UNet's
weights only (the official LitEma wraps the diffusion model; the encoder has none).

Where the UNet works (`space`):
- `vq` (the paper): a VQ autoencoder (methods/nets/vq_autoencoder.py, settings `vq_*`) maps
  the images to 16 x 16 x 3 latents, scaled by 1 / std of a batch of latents. It trains at the
  rate LDM's main.py gives it (base 4.5e-6 x 2 accumulated x batch 128 = 1.152e-3) on the fit
  split less `vq_holdout` random images, once per dataset and configuration, and is cached
  beside the runs (results/<suite>/<dataset>/encdiff/first_stage/vq-<hash>/autoencoder.pt,
  written atomically; a later run, or another variant, loads it). Every run measures its L1 on
  the held-out images (in [-1, 1] units), prints it and records it in run.json's notes
  (`first_stage`: l1, mean_image_l1, ratio); when the ratio to the L1 of the held-out images'
  mean image exceeds `vq_max_l1_ratio` (0.5: the stage must at least halve the error of a stage
  that learned nothing), the run stops with a message before the diffusion stage trains.
- `pixels` (ours, for CPU runs): the images themselves in [-1, 1], folded space-to-depth by
  `fold` (2: 32 x 32 x C -> 16 x 16 x 4C, an invertible rearrangement, no learned stage) so
  that the narrow UNet runs at 16 x 16. The encoder always sees the unfolded image.

Skip Dropout (`skip_dropout` p > 0): channel dropout on the UNet's skips at resolution >= 8
(training only); see attention_unet.py for the equivalence to the official rule.

Dynamic Gaussian Anchoring (`dyga`): at the end of every epoch, the first included (the
official refit in `validation_epoch_end`), the tokens of the whole fit split (the encoder in
eval mode) are fitted by per-unit full-covariance mixtures (methods/nets/gaussian_anchoring.py,
settings `dyga_*`, the official split bookkeeping by default); in every training forward pass
of the next epoch, tokens are anchored: c <- lambda c_q + (1 - lambda) c, lambda differentiable.
The log shows, per epoch, the mean lambda (`anchoring_lambda`), the components of each unit's
mixture in force (`components`) and the share of token entries that are exactly 0
(`zero_token_entries`): where any entry of a batch is 0 (the token MLPs end in a ReLU), lambda
is ~0 and anchoring does not move the tokens, in the official code too. The mixtures are saved
with the checkpoint.

Outputs about the score split (eval mode):
- embedding: per unit, the first principal component of the **raw** (not EMA) encoder's
  tokens over the split -> one number per unit (the spec's representation for the
  disentanglement metrics; the official `validation_step` saves the raw encoder's tokens);
- samples: `n_samples` images by DDIM (`ddim_steps`, eta 0) from the EMA UNet, each
  conditioned on the raw encoder's tokens of a random image of the split (the paper's FID
  protocol, 50,000 samples);
- traversals: the latent-interchange figure: row u holds `interchange_pairs` images decoded
  (DDIM from one shared x_T) from the tokens of an image A_i with unit u taken from image B_i.

Determinism: weights initialised under run.seed; every draw of the loop (batches, t, noise,
the anchoring fits, samples) from one torch.Generator seeded with run.seed; dropout and Skip
Dropout draw from torch's global generator, seeded with run.seed at the start and saved in
every checkpoint with the EMA weights and the mixtures, so a resumed run equals an
uninterrupted one on CPU.

Differences from the official code that remain:
- The first stage is trained with L1 + codebook losses, no perceptual or GAN loss (ours; see
  vq_autoencoder.py); its 2 accumulated batches run as one batch (ours, the same gradient);
  it holds out `vq_holdout` images for its reconstruction check (ours); trained for
  `vq_epochs` 20 (ours: the official autoencoder config sets no length).
- The latent scale factor is 1 / std of one random batch drawn after the first stage trains
  (ours; the authors' code takes the diffusion stage's first batch: the same statistic).
- Anchoring arithmetic: c_q is computed with the fit's max and min and mapped back to token
  space (ours; the official normalises each batch with its own max and min and mixes the
  normalised-space mean with the raw token: see gaussian_anchoring.py); lambda is
  differentiable and ~0 wherever a token entry is 0 (as the authors' code).
- The mixtures are fitted on, and the representation is read from, unanchored tokens (ours;
  the official `validation_step` anchors the tokens it saves and fits on, by the mixtures in
  force; the two differ by lambda |c_q - c|, with the logged lambda ~0 in our runs).
- No fit before the first epoch (ours: Lightning's sanity check makes the official code fit
  on 1,024 untrained tokens, so its first epoch is anchored too), and none after the last
  (it would anchor nothing: the official one only writes a file); a run trained on from a
  finished one's checkpoint (a longer budget: bench/curves.py) makes that refit first, and
  goes on as a run of the longer budget would.
- `epochs: 0` reads out the networks as initialised: the random-code baseline of the quick
  suite's learning check (ours).
- Split bookkeeping as the official loop, except that a round splitting nothing ends it, the
  random draw is made for every component, and a covariance regulariser is added in the M-step
  (ours; gaussian_anchoring.py lists them).
- Training length: `epochs` (100) and the last epoch reported (ours: the official config sets
  no max_epochs, Lightning 1.x runs 1,000, and `evaluate_renew.py` scores a chosen epoch).
- Training runs `epochs` epochs of `steps_per_epoch` batches (0: a full pass over the split;
  fewer: a random part of it each epoch, for CPU runs), the last incomplete batch dropped (ours).
- The pixel space, `fold`, and every quick/smoke setting (widths, T, epochs, learning rate,
  units, token size, DyGA's subsample and EM iterations) are CPU settings (ours).
- GroupNorm groups via gcd for narrow widths; the PCA's sign fixed (ours; the metrics are
  sign-invariant).
- The interchange figure's layout (ours); samples and the figure by DDIM from the EMA UNet
  (as the authors' code).
- Under precision bf16 (where native: CUDA, or a CPU with AMX or AVX512-BF16) the networks'
  training passes compute in bf16 (the VQ codebook's search and the attention in fp32), in the
  default memory layout: channels-last measured slower at quick size and no faster at paper
  size; the loss, the anchoring and every read-out are fp32 (ours; methods/nets/precision.py).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

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
from methods.nets.vq_autoencoder import KEYS as VQ_KEYS, VQAutoencoder, reconstruction_error, train_vq_autoencoder

SPACES = ("vq", "pixels")
READOUT_BATCH = 500
CHANNELS_LAST = False       # under bf16: slower at quick size, no faster at paper size (benchmarks/encdiff_throughput.py)


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
    or trained on the fit split less `vq_holdout` random images and cached there (weights only,
    written atomically with its sha256, checked against it, loaded weights_only). Its seed comes
    from its settings, not the run, so whichever run trains it trains the same one. Its L1 on
    the held-out images goes into run.json's notes; above `vq_max_l1_ratio` times that of their
    mean image, the run stops here."""
    settings = {key: config["vq_" + key] for key in VQ_KEYS}
    digest = hashlib.sha256(json.dumps([data.dataset.name, settings, config["vq_holdout"]],
                                       sort_keys=True).encode()).hexdigest()
    images = np.asarray(data.fit.x)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(digest[:8], 16))).numpy()
    held_out, training = images[np.sort(order[:config["vq_holdout"]])], images[np.sort(order[config["vq_holdout"]:])]
    stage_dir = run.dir.parent.parent / "first_stage" / f"vq-{digest[:12]}"
    cache = stage_dir / "autoencoder.pt"
    if cache.exists():
        check_recorded(cache, f"delete {stage_dir} and the next run trains it again")
        with torch.random.fork_rng(devices=[]):
            model = VQAutoencoder(settings)
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        print(f"first stage: loaded {cache}", file=sys.stderr, flush=True)
        model = run.network(model, CHANNELS_LAST)
    else:
        stage_dir.mkdir(parents=True, exist_ok=True)
        stage_run = RunContext(stage_dir, int(digest[:8], 16), run.device_setting, digest, run.precision_setting)
        model = train_vq_autoencoder(training, config, stage_run)
        with recorded_path(cache) as tmp:                            # with its sha256, checked at every load
            torch.save(model.state_dict(), tmp)
    check_reconstruction(model, torch.from_numpy(held_out), config, run, cache)
    return VQSpace(model)


def check_reconstruction(model: VQAutoencoder, held_out: torch.Tensor, config: dict, run: RunContext,
                         cache: Path) -> None:
    """Record the first stage's held-out L1 and refuse a stage that reconstructs no better than
    `vq_max_l1_ratio` times the held-out images' mean image does."""
    error = reconstruction_error(model, held_out)
    run.notes["first_stage"] = {**{key: round(value, 6) for key, value in error.items()},
                                "held_out": len(held_out), "max_ratio": config["vq_max_l1_ratio"]}
    print(f"first stage: held-out L1 {error['l1']:.4f} ({error['ratio']:.3f} of the mean image's "
          f"{error['mean_image_l1']:.4f})", file=sys.stderr, flush=True)
    if error["ratio"] > config["vq_max_l1_ratio"]:
        raise RuntimeError(f"encdiff: the VQ first stage reconstructs {len(held_out)} held-out images with L1 "
                           f"{error['l1']:.4f}, {error['ratio']:.3f} of their mean image's (at most "
                           f"{config['vq_max_l1_ratio']} allowed): it is under-trained; raise vq_epochs or check "
                           f"vq_base_lr, then delete {cache.parent} to train it again")


# The method -------------------------------------------------------------------------------

POSITIVE = ("units", "token_dim", "encoder_width", "model_channels", "res_blocks", "heads", "steps", "batch_size",
            "ddim_steps", "sample_batch", "interchange_pairs", "checkpoint_every", "fold")


def check_config(config: dict, data: RunData) -> None:
    """Every bad setting, named, before anything is built."""
    for key in POSITIVE:
        if config[key] < 1:
            raise ValueError(f"encdiff: {key} must be at least 1, got {config[key]}")
    if config["space"] not in SPACES:
        raise ValueError(f"encdiff: unknown space '{config['space']}'; valid: {', '.join(SPACES)}")
    if not 0 <= config["skip_dropout"] < 1 or not 0 <= config["dropout"] < 1:
        raise ValueError("encdiff: skip_dropout and dropout must lie in [0, 1)")
    if (config["n_samples"] < 0 or config["steps_per_epoch"] < 0 or config["epochs"] < 0 or config["lr"] <= 0
            or not 0 <= config["ema_decay"] < 1):
        raise ValueError("encdiff: n_samples, steps_per_epoch and epochs (0: the untrained networks, a random-code "
                         "baseline) must be at least 0, lr positive, ema_decay in [0, 1)")
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
    step_batch = config["vq_batch_size"] * config["vq_accumulate"]
    if config["space"] == "vq" and not 1 <= config["vq_holdout"] < len(data.fit) - step_batch:
        raise ValueError(f"encdiff: vq_holdout must be at least 1 and leave the first stage more than one step batch "
                         f"(vq_accumulate x vq_batch_size) of the {len(data.fit)} images, got {config['vq_holdout']}")
    if config["vq_max_l1_ratio"] <= 0:
        raise ValueError(f"encdiff: vq_max_l1_ratio must be positive, got {config['vq_max_l1_ratio']}")
    if config["batch_size"] > len(data.fit):
        raise ValueError(f"encdiff: batch_size {config['batch_size']} is larger than the {len(data.fit)} training images")
    AnchoringSettings.from_config(config)


def batch_loss(model: EncDiff, space, anchors: GaussianAnchors | None, x: torch.Tensor, schedule: NoiseSchedule,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The L1 noise loss of a batch x in [-1, 1], with the anchoring's lambda and the share of
    token entries that are exactly zero (for the log)."""
    tokens = model.tokens(x)
    zeros = (tokens == 0).float().mean()
    lam = torch.zeros((), device=x.device)
    if anchors is not None:
        tokens, lam = anchors.anchor(tokens)
    latents = space.encode(x)
    t = schedule.random_timesteps(len(x), generator)
    noise = torch.randn(latents.shape, generator=generator, device=x.device)
    return (model.unet(schedule.add_noise(latents, t, noise), t, tokens) - noise).abs().mean(), lam, zeros


def to_signed(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return np.rint(((images.clamp(-1, 1) + 1) * 127.5).cpu().numpy()).astype(np.uint8)


class EncDiffMethod(Method):
    name = "encdiff"
    tracks = ("disentanglement", "generation")
    budget = "epochs"

    def training_images(self, config: dict, n: int) -> int:
        batch = config["batch_size"]
        return config["epochs"] * min(n // batch, config["steps_per_epoch"] or n) * batch

    def fit(self, data: RunData, config: dict, run: RunContext) -> dict[str, np.ndarray]:
        check_config(config, data)
        device = run.device
        images = torch.tensor(np.asarray(data.fit.x), device=device)            # uint8, batched by index
        space = first_stage(data, config, run) if config["space"] == "vq" else PixelSpace(config["fold"])
        latent_channels = space.encode(to_signed(images[:1])).shape[1]
        schedule = NoiseSchedule.named(config["schedule"], config["steps"], config["beta_start"], config["beta_end"])
        training = Training.start(run, lambda: EncDiff(tuple(images.shape[1:]), latent_channels, config), config["lr"],
                                  torch.optim.AdamW, channels_last=CHANNELS_LAST)
        model, optimiser, generator = training.model, training.optimiser, training.generator
        ema = EMA(model.unet, config["ema_decay"])                               # the UNet only, as the official LitEma
        anchors, settings = None, AnchoringSettings.from_config(config)
        if training.extra:
            ema.load_state_dict(training.extra["ema"])
            torch.set_rng_state(training.extra["torch_rng"])
            anchors = GaussianAnchors.from_state_dict(training.extra["anchors"]).to(device) if "anchors" in training.extra else None
        else:
            torch.manual_seed(run.seed)                                           # dropout and Skip Dropout

        if config["dyga"] and training.extra and not training.extra.get("refitted", True) and training.epoch < config["epochs"]:
            # a longer run resumed from a shorter one's last epoch, after which it did not refit:
            # the refit a run of this length would have made then, with the same draws
            anchors = GaussianAnchors.fit(self.tokens(model, images), generator, settings)
        batch, n = config["batch_size"], len(images)
        steps = min(n // batch, config["steps_per_epoch"] or n)
        for epoch in run.progress(range(training.epoch + 1, config["epochs"] + 1),
                                  total=config["epochs"] - training.epoch, desc="encdiff epochs"):
            model.train()
            order = torch.randperm(n, generator=generator, device=device)[:steps * batch].view(steps, batch)
            sums = torch.zeros(3, device=device)                                  # loss, lambda, share of zero entries
            for step, index in enumerate(order):
                loss, lam, zeros = batch_loss(model, space, anchors, to_signed(images[index]), schedule, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"encdiff: loss is {loss.item()} at epoch {epoch}, step {step}")
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                ema.update(model.unet)
                sums += torch.stack([loss.detach(), lam.detach().float(), zeros.detach()])
            loss_mean, lam_mean, zeros_mean = (sums / steps).tolist()
            run.log(epoch=epoch, loss=round(loss_mean, 6), anchoring_lambda=f"{lam_mean:.6g}",
                    zero_token_entries=round(zeros_mean, 6),
                    components=("" if anchors is None else " ".join(map(str, anchors.n_components.tolist()))))
            refit = config["dyga"] and epoch < config["epochs"]   # refit for the next epoch (after the last: unused)
            if refit:
                anchors = GaussianAnchors.fit(self.tokens(model, images), generator, settings)
            if epoch % config["checkpoint_every"] == 0 or epoch == config["epochs"]:
                extra = {"ema": ema.state_dict(), "torch_rng": torch.get_rng_state(), "refitted": refit}
                if anchors is not None:
                    extra["anchors"] = anchors.state_dict()
                training.save(run, epoch, extra)

        ema.copy_to(model.unet)                      # samples from the EMA UNet; the scored encoder stays raw
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
