"""One training iteration's parts: the networks and optimisers of a rank, the generator step and
the discriminator step.

Each iteration is a generator step (the discriminator frozen) and then a discriminator step on the
detached output. Under ``torchrun`` both networks are wrapped in DistributedDataParallel; with
``compile=true`` the generator is compiled.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ctsdg.checkpoints import LoadedWeights, load_weights
from ctsdg.config import Config
from ctsdg.data import Batch
from ctsdg.errors import CommandError, InputError
from ctsdg.losses import GeneratorLoss, discriminator_loss
from ctsdg.models import Discriminator, Generator, VGG16Features, generator_inputs
from ctsdg.models.generator import ModelConfig
from ctsdg.runtime import autocast
from ctsdg.training import distributed
from ctsdg.training.distributed import Context
from ctsdg.training.schedule import learning_rates

log = logging.getLogger(__name__)


class NonFiniteLossError(CommandError, RuntimeError):
    """A loss term became NaN or infinite; training stopped before the optimiser step (exit
    status 1)."""


@dataclass
class TrainState:
    """The networks, their optimisers and the loss, as one rank holds them."""

    generator: nn.Module  # DDP-wrapped and/or compiled when asked
    discriminator: nn.Module
    raw_generator: Generator
    raw_discriminator: Discriminator
    loss: GeneratorLoss
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    config: Config
    ctx: Context


def _check_finite(terms: dict[str, torch.Tensor], total: torch.Tensor, ctx: Context) -> None:
    """Stop every rank together if any rank's loss is not finite (before any optimiser step)."""
    local_bad = not bool(torch.isfinite(total.detach()).item())
    if distributed.any_rank([local_bad], ctx)[0]:
        bad = [name for name, value in terms.items() if not torch.isfinite(value.detach()).all()]
        parts = [name for name in bad if not name.endswith("_total")] or bad  # blame the term
        raise NonFiniteLossError(", ".join(parts) or "a term on another rank")


def generator_step(state: TrainState, batch: Batch) -> tuple[Any, dict[str, torch.Tensor]]:
    """One generator update with the discriminator frozen. Returns (output, loss terms).

    It opens the iteration, so under DDP it first gives every rank rank 0's buffers.
    """
    device, precision = state.ctx.device, state.config.precision
    distributed.broadcast_buffers(state.raw_generator, state.ctx)
    distributed.broadcast_buffers(state.raw_discriminator, state.ctx)
    state.raw_discriminator.requires_grad_(False)
    try:
        with autocast(device, precision):
            out = state.generator(
                *generator_inputs(batch.image, batch.edge, batch.gray, batch.mask)
            )
            # The unwrapped discriminator: its gradients are not wanted here, so DDP stays out.
            fake_pred, fake_edge = state.raw_discriminator(
                out.output, batch.gray, batch.edge, real=False
            )
            total, terms = state.loss(
                out, batch.image, batch.mask, batch.edge, fake_pred, fake_edge
            )
        terms = {"g_total": total, **{f"g_{k}": v for k, v in terms.items()}}
        _check_finite(terms, total, state.ctx)
        state.optimizer_g.zero_grad(set_to_none=True)
        state.scaler.scale(total).backward()
        state.scaler.step(state.optimizer_g)
    finally:
        state.raw_discriminator.requires_grad_(True)
    return out, terms


def discriminator_step(
    state: TrainState, batch: Batch, output: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One discriminator update on the ground truth and the detached generator output."""
    with autocast(state.ctx.device, state.config.precision):
        real_pred, real_edge = state.discriminator(batch.image, batch.gray, batch.edge, real=True)
        fake_pred, fake_edge = state.discriminator(
            output.detach(), batch.gray, batch.edge, real=False
        )
        total, terms = discriminator_loss(real_pred, fake_pred, real_edge, fake_edge, batch.edge)
    terms = {"d_total": total, **{f"d_{k}": v for k, v in terms.items()}}
    _check_finite(terms, total, state.ctx)
    state.optimizer_d.zero_grad(set_to_none=True)
    state.scaler.scale(total).backward()
    state.scaler.step(state.optimizer_d)
    state.scaler.update()
    return terms


# --------------------------------------------------------------------------- building


def data_parallel(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``module`` under DDP, its buffers left alone (`generator_step` syncs them once per
    iteration).

    DDP's own buffer broadcast rewrites them in place before every forward. The discriminator step
    runs two forwards before one backward, and on CUDA cuDNN's BatchNorm backward keeps the running
    statistics of the first: the second broadcast invalidates them ("modified by an inplace
    operation"), so DDP training on GPUs failed at its first discriminator step.
    """
    ids = [device.index] if device.type == "cuda" else None
    # torch 2.13 renamed the flag (the old name warns once per rank); 2.3-2.12 know only the old.
    name = "forward_sync_buffers" if _DDP_TAKES_FORWARD_SYNC else "broadcast_buffers"
    return DistributedDataParallel(module, device_ids=ids, **{name: False})


_DDP_TAKES_FORWARD_SYNC = (
    "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
)


def vgg_from_config(config: Config) -> VGG16Features:
    """The loss network ``pretrained_vgg`` names, loaded and checked (`VGG16Features`)."""
    if config.pretrained_vgg == "random":
        return VGG16Features.random()
    if not config.pretrained_vgg:
        raise InputError(
            "config key pretrained_vgg: required: the path of torchvision's vgg16-397923af.pth, "
            "'auto' (fetched into torch.hub's cache) or 'random' (smoke tests and the demo)"
        )
    return VGG16Features.from_file(config.pretrained_vgg)


def load_pretrained(config: Config) -> LoadedWeights:
    """The weights ``pretrained`` names, read and checked against the config's model."""
    weights = load_weights(config.pretrained)
    if weights.model != ModelConfig(config.width, config.align_corners):
        raise InputError(
            f"{weights.path}: weights are width {weights.model.width}, align_corners "
            f"{weights.model.align_corners}; set width={weights.model.width} "
            f"align_corners={str(weights.model.align_corners).lower()} to start from them"
        )
    if weights.generator is None:
        raise InputError(f"{weights.path}: holds no generator to start from")
    return weights


def _start_from(
    config: Config, weights: LoadedWeights, generator: Generator, discriminator: Discriminator
) -> None:
    generator.load_state_dict(weights.generator)
    if weights.discriminator is not None:
        discriminator.load_state_dict(weights.discriminator)
    if weights.structure != config.structure:
        log.warning(
            "%s was trained on '%s' structure inputs but this run feeds '%s' ones",
            weights.path,
            weights.structure,
            config.structure,
        )


def build_state(
    config: Config,
    ctx: Context,
    *,
    pretrained: LoadedWeights | None = None,
    vgg: VGG16Features | None = None,
) -> TrainState:
    """Networks (optionally from ``pretrained``), optimisers, loss, scaler; wrapped for DDP.

    ``pretrained`` and ``vgg`` are what `load_pretrained` and `vgg_from_config` return, when
    the caller has loaded them already (`trainer.prepare`); otherwise they are loaded here.
    """
    torch.manual_seed(config.seed)
    generator = Generator(width=config.width, align_corners=config.align_corners)
    discriminator = Discriminator(width=config.width)
    if config.pretrained:
        _start_from(config, pretrained or load_pretrained(config), generator, discriminator)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    generator.to(ctx.device, memory_format=memory_format)
    discriminator.to(ctx.device, memory_format=memory_format)
    loss = GeneratorLoss(
        vgg if vgg is not None else vgg_from_config(config), config.loss_weights
    ).to(ctx.device, memory_format=memory_format)
    lr_g, lr_d = learning_rates(config, "train")
    betas = tuple(config.adam_betas)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.precision == "fp16")
    wrapped_g: nn.Module = generator
    wrapped_d: nn.Module = discriminator
    if ctx.distributed:
        wrapped_g = data_parallel(generator, ctx.device)
        wrapped_d = data_parallel(discriminator, ctx.device)
    if config.compile:
        # The generator holds nearly all the compute. The discriminator stays eager: compiled,
        # the in-place power-iteration updates of spectral norm's u/v between its two forward
        # passes invalidate tensors its backward saved.
        wrapped_g = torch.compile(wrapped_g)
    return TrainState(
        generator=wrapped_g,
        discriminator=wrapped_d,
        raw_generator=generator,
        raw_discriminator=discriminator,
        loss=loss,
        optimizer_g=optimizer_g,
        optimizer_d=optimizer_d,
        scaler=scaler,
        config=config,
        ctx=ctx,
    )


def to_device(batch: Batch, ctx: Context, channels_last: bool) -> Batch:
    """The batch on this rank's device, NHWC when ``channels_last`` (as the networks are)."""
    batch = batch.to(ctx.device, non_blocking=True)
    if channels_last:
        batch = Batch(
            *(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in batch)
        )
    return batch
