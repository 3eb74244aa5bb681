"""Saving a training run and resuming it: what goes into a training checkpoint (both networks,
both optimizers, the scaler, the RNG states), pruning, ``resume=auto`` with its fallback past a
corrupt file, and `restore`.

The file format itself (layout, reading, checking, writing) is
`ctsdg.checkpoints.training_format`'s.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ctsdg.checkpoints.training_format import (
    TrainingCheckpoint,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    read_training_checkpoint,
    write_training_checkpoint,
)
from ctsdg.errors import InputError
from ctsdg.models.generator import ModelConfig

if TYPE_CHECKING:
    from ctsdg.config import Config
    from ctsdg.training.steps import TrainState

log = logging.getLogger(__name__)

_RESTORED = (
    "iteration",
    "generator",
    "discriminator",
    "optimizer_g",
    "optimizer_d",
    "scaler",
    "rng",
)
# Keys that may change between a run and its resume without changing what is trained.
_RESUME_IGNORED = frozenset(
    {"resume", "save_path", "progress", "tensorboard", "device", "num_parallel_workers"}
)


# --------------------------------------------------------------------------- RNG state


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random generator training draws from (torch, CUDA, numpy, Python), as tensors and
    plain values that ``weights_only`` loading accepts."""
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


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])


# --------------------------------------------------------------------------- save / restore


def save(state: TrainState, iteration: int, stage: str) -> Path:
    """Write this iteration's training checkpoint (rank 0 calls this) and prune old ones."""
    config = state.config
    path = write_training_checkpoint(
        checkpoint_path(config.save_path, iteration),
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
            "rng": rng_state(state.ctx.device),
        },
    )
    prune_checkpoints(config.save_path, config.keep_checkpoint_max)
    return path


def resume_source(config: Config) -> TrainingCheckpoint | None:
    """The checkpoint ``resume`` points at, read and checked, or None to start fresh.

    ``auto`` takes the newest intact checkpoint of ``save_path``: a newer one that cannot be
    read (a crash mid-copy, a damaged disk) is passed over with a warning naming it. A folder
    or file given explicitly must be readable.
    """
    if not config.resume:
        return None
    if config.resume != "auto":
        path = Path(config.resume)
        return read_training_checkpoint(latest_checkpoint(path) if path.is_dir() else path)
    found = list_checkpoints(config.save_path)
    newest_error: InputError | None = None
    for i, (_, path) in enumerate(reversed(found)):
        try:
            checkpoint = read_training_checkpoint(path)
        except InputError as err:
            newest_error = newest_error or err
            older = found[-2 - i][1] if i + 1 < len(found) else None
            log.warning(
                "%s; resume=auto %s",
                err,
                f"falls back to the previous one, {older}" if older else "has nothing older",
            )
            continue
        return checkpoint
    if found:
        raise InputError(
            f"{config.save_path}: no intact training checkpoint to resume from (all "
            f"{len(found)} are unreadable; the newest: {newest_error}); move them away to start "
            "fresh"
        )
    return None


def check_resumable(config: Config, checkpoint: TrainingCheckpoint) -> None:
    """Raise InputError unless ``config``'s run can continue from ``checkpoint`` exactly."""
    path, data = checkpoint.path, checkpoint.data
    if checkpoint.model != ModelConfig(config.width, config.align_corners):
        raise InputError(f"{path}: checkpoint model {checkpoint.model} differs from the config's")
    missing = [k for k in _RESTORED if k not in data]
    if missing:
        raise InputError(f"{path}: cannot resume exactly, checkpoint lacks {', '.join(missing)}")


def restore(state: TrainState, checkpoint: TrainingCheckpoint) -> int:
    """Load a training checkpoint into ``state``; returns the iteration it was saved at."""
    config, path, data = state.config, checkpoint.path, checkpoint.data
    check_resumable(config, checkpoint)
    current = config.to_dict()
    changed = sorted(
        k
        for k, v in data.get("config", {}).items()
        if k not in _RESUME_IGNORED and k in current and current[k] != v
    )
    if changed:
        log.warning("resuming %s with changed config keys: %s", path, ", ".join(changed))
    saved_world = data.get("world_size", state.ctx.world_size)
    if saved_world != state.ctx.world_size:
        log.warning(
            "resuming on %d ranks a run saved on %d: the data stream continues from the same "
            "iteration count, not the same samples",
            state.ctx.world_size,
            saved_world,
        )
    device = state.ctx.device
    try:
        state.raw_generator.load_state_dict(data["generator"])
        state.raw_discriminator.load_state_dict(data["discriminator"])
        state.optimizer_g.load_state_dict(data["optimizer_g"])
        state.optimizer_d.load_state_dict(data["optimizer_d"])
        state.scaler.load_state_dict(data["scaler"])
        set_rng_state(data["rng"], device)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(f"{path}: cannot resume from this checkpoint ({reason})") from None
    return checkpoint.iteration
