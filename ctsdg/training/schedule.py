"""The paper's (and the MindSpore port's) two-stage schedule: which stage an iteration is in,
its learning rates, and the finetune stage's frozen BatchNorm layers.

Stage 1 (``train``) runs at ``gen_lr_train``; stage 2 (``finetune``) at ``gen_lr_finetune``
with the generator's BatchNorm layers frozen (``finetune_freeze_bn``: ``encoder`` as the paper,
``all`` as the authors' code). The discriminator's rate is the generator's times
``dis_lr_multiplier``. Adam keeps its moments across the switch.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ctsdg.config import Config
from ctsdg.models import Generator


class Staged(Protocol):
    """What switching stages touches (`ctsdg.training.steps.TrainState` is one); a protocol, so
    this module need not import `steps`, which imports it."""

    config: Config
    raw_generator: Generator
    raw_discriminator: nn.Module
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer


def stage_plan(config: Config) -> list[tuple[str, int]]:
    """``[(stage, iterations), ...]`` in order, as ``config.stage`` selects."""
    plan = [("train", config.train_iter), ("finetune", config.finetune_iter)]
    if config.stage != "all":
        plan = [p for p in plan if p[0] == config.stage]
    return [p for p in plan if p[1] > 0]


def stage_at(iteration: int, plan: list[tuple[str, int]]) -> str:
    """The stage that iteration ``iteration + 1`` belongs to (``iteration`` done so far)."""
    end = 0
    for stage, iterations in plan:
        end += iterations
        if iteration < end:
            return stage
    return plan[-1][0]


def learning_rates(config: Config, stage: str) -> tuple[float, float]:
    """(generator lr, discriminator lr) of a stage."""
    lr = config.gen_lr_train if stage == "train" else config.gen_lr_finetune
    return lr, lr * config.dis_lr_multiplier


def set_train_mode(generator: Generator, stage: str, freeze_bn: str) -> None:
    """Train mode, except the BatchNorm layers that the finetune stage freezes (eval mode: they
    use and keep their running statistics; their affine parameters still learn)."""
    generator.train()
    if stage != "finetune":
        return
    scope = (
        [generator.texture_encoder, generator.structure_encoder]
        if freeze_bn == "encoder"
        else [generator]
    )
    for part in scope:
        for module in part.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def set_modes(state: Staged, stage: str) -> None:
    """The networks' train/eval modes of ``stage`` (the discriminator always trains)."""
    set_train_mode(state.raw_generator, stage, state.config.finetune_freeze_bn)
    state.raw_discriminator.train()


def set_stage(state: Staged, stage: str) -> None:
    """Enter ``stage``: its learning rates on both optimizers and its modes."""
    lr_g, lr_d = learning_rates(state.config, stage)
    _set_lr(state.optimizer_g, lr_g)
    _set_lr(state.optimizer_d, lr_d)
    set_modes(state, stage)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
