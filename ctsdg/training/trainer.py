"""CTSDG training: the seed's two-stage schedule on one device or many, resumable exactly.

Each iteration is a generator step (the discriminator frozen) and then a discriminator step on
the detached output. Stage 1 trains at ``gen_lr_train``; stage 2 (finetune) at
``gen_lr_finetune`` with the generator's BatchNorm layers frozen (``finetune_freeze_bn``:
``encoder`` as the paper, ``all`` as the authors' code). The discriminator's learning rate is the
generator's times ``dis_lr_multiplier``. Adam keeps its moments across the stage switch.

Under ``torchrun`` both networks are wrapped in DistributedDataParallel; each rank draws its own
shard of the sample stream, losses are averaged over ranks for the log, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ctsdg.checkpoints import (
    ModelConfig,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_weights,
    save_training_checkpoint,
)
from ctsdg.config import Config
from ctsdg.data import Batch, build_loader, dataset_from_config
from ctsdg.errors import InputError
from ctsdg.losses import GeneratorLoss, discriminator_loss
from ctsdg.models import Discriminator, Generator, VGG16Features, generator_inputs
from ctsdg.runtime import autocast, tune_cpu_allocator
from ctsdg.training import distributed
from ctsdg.training.distributed import Context
from ctsdg.training.monitor import Monitor, log_line
from ctsdg.visualize import grid, masked_for_display

log = logging.getLogger(__name__)

STAGES = ("train", "finetune")
_INDICES_KEPT = 4096  # dataset indices a TrainResult remembers (for checks, not for resuming)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stopped before the optimiser step."""


@dataclass
class TrainResult:
    """How a run ended."""

    iteration: int
    status: str  # "finished" or "interrupted"
    checkpoint: Path | None
    indices_seen: list[int] = field(default_factory=list)  # this rank's first samples
    digest: str = ""  # SHA-256 of the generator's and discriminator's final weights


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


# --------------------------------------------------------------------------- schedule


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


def set_stage(state: TrainState, stage: str) -> None:
    lr_g, lr_d = learning_rates(state.config, stage)
    for group in state.optimizer_g.param_groups:
        group["lr"] = lr_g
    for group in state.optimizer_d.param_groups:
        group["lr"] = lr_d
    set_train_mode(state.raw_generator, stage, state.config.finetune_freeze_bn)
    state.raw_discriminator.train()


# --------------------------------------------------------------------------- steps


def _check_finite(terms: dict[str, torch.Tensor], total: torch.Tensor, ctx: Context) -> None:
    """Stop every rank together if any rank's loss is not finite (before any optimiser step)."""
    local_bad = not bool(torch.isfinite(total.detach()).item())
    if distributed.any_rank([local_bad], ctx)[0]:
        bad = [name for name, value in terms.items() if not torch.isfinite(value.detach()).all()]
        parts = [name for name in bad if not name.endswith("_total")] or bad  # blame the term
        raise NonFiniteLossError(", ".join(parts) or "a term on another rank")


def generator_step(state: TrainState, batch: Batch) -> tuple[Any, dict[str, torch.Tensor]]:
    """One generator update with the discriminator frozen. Returns (output, loss terms)."""
    device, precision = state.ctx.device, state.config.precision
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


def _vgg(config: Config) -> VGG16Features:
    if config.pretrained_vgg == "random":
        return VGG16Features.random()
    if not config.pretrained_vgg:
        raise InputError(
            "config key pretrained_vgg: required: the path of torchvision's vgg16-397923af.pth "
            "(or 'random' for smoke tests and the demo)"
        )
    return VGG16Features.from_file(config.pretrained_vgg)


def _load_pretrained(config: Config, generator: Generator, discriminator: Discriminator) -> None:
    weights = load_weights(config.pretrained)
    if weights.model != ModelConfig(config.width, config.align_corners):
        raise InputError(
            f"{weights.path}: weights are width {weights.model.width}, align_corners "
            f"{weights.model.align_corners}; set width={weights.model.width} "
            f"align_corners={str(weights.model.align_corners).lower()} to start from them"
        )
    if weights.generator is None:
        raise InputError(f"{weights.path}: holds no generator to start from")
    generator.load_state_dict(weights.generator)
    if weights.discriminator is not None:
        discriminator.load_state_dict(weights.discriminator)
    if weights.structure != config.structure:
        log.warning(
            "%s was trained on '%s' structure inputs but this run feeds '%s' ones",
            weights.path, weights.structure, config.structure,
        )  # fmt: skip


def build_state(config: Config, ctx: Context) -> TrainState:
    """Networks (optionally from ``pretrained``), optimisers, loss, scaler; wrapped for DDP."""
    torch.manual_seed(config.seed)
    generator = Generator(width=config.width, align_corners=config.align_corners)
    discriminator = Discriminator(width=config.width)
    if config.pretrained:
        _load_pretrained(config, generator, discriminator)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    generator.to(ctx.device, memory_format=memory_format)
    discriminator.to(ctx.device, memory_format=memory_format)
    loss = GeneratorLoss(_vgg(config), config.loss_weights).to(
        ctx.device, memory_format=memory_format
    )
    lr_g, lr_d = learning_rates(config, "train")
    betas = tuple(config.adam_betas)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.precision == "fp16")
    wrapped_g: nn.Module = generator
    wrapped_d: nn.Module = discriminator
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        wrapped_g = DistributedDataParallel(generator, device_ids=ids)
        wrapped_d = DistributedDataParallel(discriminator, device_ids=ids)
    if config.compile:
        # The generator holds nearly all the compute. The discriminator stays eager: compiled,
        # the in-place power-iteration updates of spectral norm's u/v between its two forward
        # passes invalidate tensors its backward saved.
        wrapped_g = torch.compile(wrapped_g)
    return TrainState(
        wrapped_g, wrapped_d, generator, discriminator, loss, optimizer_g, optimizer_d, scaler,
        config, ctx,
    )  # fmt: skip


# --------------------------------------------------------------------------- checkpoints


def _rng_state(device: torch.device) -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
         n["cached_gaussian"])
    )  # fmt: skip
    random.setstate(state["python"])


def save_checkpoint(state: TrainState, iteration: int, stage: str) -> Path:
    """Write this iteration's training checkpoint (rank 0) and prune old ones."""
    config = state.config
    path = checkpoint_path(config.save_path, iteration)
    save_training_checkpoint(
        path,
        {
            "model": ModelConfig(config.width, config.align_corners).to_dict(),
            "structure": config.structure,
            "config": config.to_dict(),
            "iteration": iteration,
            "stage": stage,
            "world_size": state.ctx.world_size,
            "generator": state.raw_generator.state_dict(),
            "discriminator": state.raw_discriminator.state_dict(),
            "optimizer_g": state.optimizer_g.state_dict(),
            "optimizer_d": state.optimizer_d.state_dict(),
            "scaler": state.scaler.state_dict(),
            "rng": _rng_state(state.ctx.device),
        },
    )
    for _, old in list_checkpoints(config.save_path)[: -config.keep_checkpoint_max]:
        old.unlink(missing_ok=True)
    return path


_RESUME_IGNORED = {
    "resume",
    "save_path",
    "progress",
    "tensorboard",
    "device",
    "num_parallel_workers",
}


def resume_path(config: Config) -> Path | None:
    """The checkpoint ``resume`` points at: ``auto`` is the newest in ``save_path`` (or None)."""
    if not config.resume:
        return None
    if config.resume == "auto":
        try:
            return latest_checkpoint(config.save_path)
        except InputError:
            return None
    path = Path(config.resume)
    return latest_checkpoint(path) if path.is_dir() else path


def restore(state: TrainState, path: Path) -> int:
    """Load a training checkpoint into ``state``; returns the iteration it was saved at."""
    if not path.is_file():
        raise InputError(f"{path}: checkpoint to resume from not found")
    try:
        data = torch.load(path, map_location=state.ctx.device, weights_only=True)
    except Exception as err:
        raise InputError(f"{path}: unreadable training checkpoint ({err})") from None
    if not isinstance(data, dict) or data.get("format") != "ctsdg-checkpoint":
        raise InputError(
            f"{path}: not a ctsdg training checkpoint; resume needs one "
            "(use pretrained=PATH to start from other weights)"
        )
    config = state.config
    model = ModelConfig.from_dict(data["model"], path)
    if model != ModelConfig(config.width, config.align_corners):
        raise InputError(f"{path}: checkpoint model {model} differs from the config's")
    changed = sorted(
        k for k, v in data.get("config", {}).items()
        if k not in _RESUME_IGNORED and k in config.to_dict() and config.to_dict()[k] != v
    )  # fmt: skip
    if changed:
        log.warning("resuming %s with changed config keys: %s", path, ", ".join(changed))
    if data.get("world_size", state.ctx.world_size) != state.ctx.world_size:
        log.warning("resuming on %d ranks a run saved on %d: the data stream continues from "
                    "the same iteration count, not the same samples",
                    state.ctx.world_size, data["world_size"])  # fmt: skip
    state.raw_generator.load_state_dict(data["generator"])
    state.raw_discriminator.load_state_dict(data["discriminator"])
    state.optimizer_g.load_state_dict(data["optimizer_g"])
    state.optimizer_d.load_state_dict(data["optimizer_d"])
    state.scaler.load_state_dict(data["scaler"])
    _set_rng_state(data["rng"], state.ctx.device)
    return int(data["iteration"])


# --------------------------------------------------------------------------- the loop


class _StopRequest:
    """SIGINT / SIGTERM ask for a checkpoint and a clean stop; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _sample_grid(
    state: TrainState, batch: Batch, out: Any, iteration: int, monitor: Monitor
) -> None:
    n = min(4, batch.image.shape[0])
    mask = batch.mask[:n]
    comp = batch.image[:n] * mask + out.output[:n].detach() * (1 - mask)
    columns = [
        masked_for_display(batch.image[:n], mask),
        (batch.edge[:n] * mask) * 2 - 1,
        out.output[:n],
        comp,
        batch.image[:n],
    ]
    titles = ["input", "edges", "output", "composite", "ground truth"]
    path = Path(state.config.save_path) / "samples" / f"iter_{iteration:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = grid(columns, titles)
    picture.save(path)
    monitor.image(iteration, "samples", picture)


def _validate(state: TrainState, iteration: int, monitor: Monitor) -> None:
    """PSNR / SSIM of the composites on the ``val`` split (sharded over ranks), seed metrics."""
    from ctsdg.metrics import composite, psnr, ssim, to_unit

    config, ctx = state.config, state.ctx
    dataset = dataset_from_config(config, "val", limit=config.val_samples)
    loader = build_loader(
        dataset, config.test_batch_size, train=False, num_workers=config.num_parallel_workers,
        distributed=(ctx.rank, ctx.world_size),
    )  # fmt: skip
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # psnr, ssim, images
    state.raw_generator.eval()
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(ctx.device, non_blocking=True)
            with autocast(ctx.device, config.precision):
                out = state.raw_generator(
                    *generator_inputs(batch.image, batch.edge, batch.gray, batch.mask)
                )
            comp = to_unit(composite(batch.image, out.output.float(), batch.mask))
            truth = to_unit(batch.image)
            sums += torch.stack([psnr(comp, truth).sum(), ssim(comp, truth).sum(),
                                 torch.tensor(float(len(batch.index)))]).to(sums)  # fmt: skip
    distributed.sum_over_ranks(sums, ctx)
    set_stage(state, stage_at(iteration - 1, stage_plan(config)))
    psnr_mean, ssim_mean = (sums[:2] / sums[2].clamp_min(1)).tolist()
    monitor.print(f"iter: {iteration}, validation on {int(sums[2])} images: "
                  f"PSNR {psnr_mean:.2f}, SSIM {ssim_mean:.3f}")  # fmt: skip
    monitor.scalars(iteration, {"val/psnr": psnr_mean, "val/ssim": ssim_mean})


def train(config: Config) -> TrainResult:
    """Train CTSDG as ``config`` says; resume when ``config.resume`` is set. See the README.

    Returns how the run ended. Raises InputError on bad configuration or data and
    NonFiniteLossError when a loss stops being finite (nothing is saved from that iteration).
    """
    if config.device in ("auto", "cpu"):
        tune_cpu_allocator()
    ctx = distributed.setup(config.device)
    try:
        return _train(config, ctx)
    finally:
        # DDP's reducers hold the process group and can sit in reference cycles: free them
        # before the group goes, or a gloo rank may abort at exit ("terminate called ...").
        gc.collect()
        distributed.teardown()


def _train(config: Config, ctx: Context) -> TrainResult:
    plan = stage_plan(config)
    if not plan:
        raise InputError("nothing to train: train_iter and finetune_iter are 0 for this stage")
    total = sum(n for _, n in plan)
    save_path = Path(config.save_path)
    state = build_state(config, ctx)
    start = 0
    resume = resume_path(config)
    if resume is not None:
        start = restore(state, resume)
    if ctx.is_main:
        config.save(save_path / "config.yaml")
    monitor = Monitor(
        save_path, total, start, enabled=ctx.is_main, progress=config.progress,
        tensorboard=config.tensorboard,
    )  # fmt: skip
    if resume is not None:
        monitor.print(f"resumed from {resume} at iteration {start}")
    elif config.resume:
        monitor.print(f"resume={config.resume}: no checkpoint in {save_path}, starting fresh")
    if start >= total:
        monitor.print(f"nothing to do: the run is already at iteration {start} of {total}")
        monitor.close()
        return TrainResult(start, "finished", resume)

    dataset = dataset_from_config(config, "train")
    loader = build_loader(
        dataset, config.batch_size, train=True, num_workers=config.num_parallel_workers,
        seed=config.seed, distributed=(ctx.rank, ctx.world_size), start_batch=start,
    )  # fmt: skip
    monitor.print(
        f"training {sum(p.numel() for p in state.raw_generator.parameters()) / 1e6:.1f} M "
        f"generator parameters on {ctx.world_size} x {ctx.device}, batch {config.batch_size} per "
        f"rank, {config.precision}, stages {plan}, from iteration {start} to {total}; "
        f"{len(dataset)} training images; run folder {save_path}"
    )

    try:
        return _loop(state, loader, monitor, plan, start)
    finally:
        monitor.close()
        skipped = getattr(dataset, "skipped_files", None)
        if skipped:
            log.warning("%d unreadable training files were skipped", len(skipped))


def _loop(
    state: TrainState, loader: Any, monitor: Monitor, plan: list[tuple[str, int]], start: int
) -> TrainResult:
    """The iterations from ``start`` to the end of ``plan``, checkpointing as configured."""
    config, ctx = state.config, state.ctx
    total = sum(n for _, n in plan)
    iteration, stage = start, stage_at(start, plan)
    last_saved: Path | None = None
    saved_at, digest = -1, ""
    indices: list[int] = []
    window: dict[str, torch.Tensor] = {}
    window_steps, window_start = 0, time.perf_counter()
    set_stage(state, stage)
    monitor.print(f"iter: {iteration}, stage {stage}: generator lr "
                  f"{learning_rates(config, stage)[0]:g}")  # fmt: skip
    with _StopRequest() as stop:
        for batch in loader:
            if stage != stage_at(iteration, plan):
                stage = stage_at(iteration, plan)
                set_stage(state, stage)
                monitor.print(f"iter: {iteration}, stage {stage}: generator lr "
                              f"{learning_rates(config, stage)[0]:g}")  # fmt: skip
            batch = batch.to(ctx.device, non_blocking=True)
            if config.channels_last:
                batch = Batch(*(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4
                                else t for t in batch))  # fmt: skip
            if len(indices) < _INDICES_KEPT:
                indices.extend(batch.index.tolist())
            try:
                out, g_terms = generator_step(state, batch)
                d_terms = discriminator_step(state, batch, out.output)
            except NonFiniteLossError as err:
                monitor.print(
                    f"iter: {iteration + 1}: loss term(s) {err} not finite; stopping. Nothing was "
                    f"saved from this iteration; the last checkpoint is {last_saved or 'none'}"
                )
                raise NonFiniteLossError(
                    f"iteration {iteration + 1}: non-finite loss term(s) {err}"
                ) from None
            iteration += 1
            window_steps += 1
            for name, value in {**g_terms, **d_terms}.items():
                window[name] = window.get(name, 0) + value.detach().float()
            monitor.advance()

            if iteration % config.log_frequency_step == 0 or iteration == total:
                elapsed = time.perf_counter() - window_start
                values = {k: v.item() / window_steps for k, v in window.items()}
                values = distributed.mean_over_ranks(values, ctx)
                step_ms = 1000 * elapsed / window_steps
                monitor.print(log_line(iteration, values["g_total"], values["d_total"], step_ms))
                lr_g, lr_d = learning_rates(config, stage)
                monitor.scalars(iteration, {
                    **{f"loss/{k}": v for k, v in values.items()},
                    "lr/generator": lr_g, "lr/discriminator": lr_d,
                    "speed/step_time_ms": step_ms,
                    "speed/images_per_s": config.batch_size * ctx.world_size / (step_ms / 1000),
                })  # fmt: skip
                monitor.postfix(loss_g=values["g_total"], loss_d=values["d_total"])
                window, window_steps, window_start = {}, 0, time.perf_counter()
            if ctx.is_main and config.sample_every and iteration % config.sample_every == 0:
                _sample_grid(state, batch, out, iteration, monitor)
            if config.val_every and iteration % config.val_every == 0:
                _validate(state, iteration, monitor)
            stop_now = distributed.any_rank([stop.requested], ctx)[0]
            if iteration % config.save_checkpoint_steps == 0 or iteration == total or stop_now:
                digest = _check_replicas(state)
                if ctx.is_main:
                    last_saved = save_checkpoint(state, iteration, stage)
                saved_at = iteration
                distributed.barrier(ctx)
            if stop_now or iteration >= total:
                break
    if saved_at != iteration:  # the loader ran dry (cannot happen with the endless sampler)
        raise RuntimeError(f"training stopped at iteration {iteration} without a checkpoint")
    if iteration < total:
        monitor.print(f"interrupted at iteration {iteration}; checkpoint {last_saved}; "
                      "continue with resume=auto")  # fmt: skip
        return TrainResult(iteration, "interrupted", last_saved, indices, digest)
    monitor.print(f"finished {iteration} iterations; checkpoint {last_saved}")
    return TrainResult(iteration, "finished", last_saved, indices, digest)


def _check_replicas(state: TrainState) -> str:
    """All ranks must hold the same networks (see `distributed.check_consistency`)."""
    g = distributed.check_consistency(state.raw_generator, state.ctx, "generator")
    d = distributed.check_consistency(state.raw_discriminator, state.ctx, "discriminator")
    return f"{g[:16]}{d[:16]}"
