"""The training-checkpoint format: save, read, restore, prune, and the RNG state inside.

A training checkpoint (``RUN/checkpoints/checkpoint_NNNNNNN.pt``) is a ``torch.save`` of plain
containers and tensors, so it loads with ``weights_only=True``: ``format``, ``version``,
``model`` (`ModelConfig` as a dict), ``structure``, ``config`` (the resolved training config),
``iteration``, ``stage``, ``world_size``, both networks, both optimizers, the gradient scaler and
the RNG states. Together with the data stream (a pure function of the seed and the iteration)
that is everything an exact resume needs.

This module is the one reader of the format: `checkpoints.loading` calls
`parse_training_checkpoint` for a user's ``--checkpoint``, and resuming calls `restore`.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ctsdg.data.structure import STRUCTURES
from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write, check_tensors, unwrap_os_error
from ctsdg.models.generator import ModelConfig

if TYPE_CHECKING:
    from ctsdg.config import Config
    from ctsdg.training.steps import TrainState

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ctsdg-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"checkpoint_(\d+)\.pt")
_REQUIRED = ("model",)  # enough to build a generator from (weights-only users)
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


# --------------------------------------------------------------------------- run folders


def checkpoint_path(run_dir: str | os.PathLike[str], iteration: int) -> Path:
    """Where the training checkpoint of ``iteration`` lives inside a run folder."""
    return Path(run_dir) / CHECKPOINT_DIR / f"checkpoint_{iteration:07d}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The run folder's training checkpoints as ``(iteration, path)``, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = []
    for path in folder.glob("checkpoint_*.pt") if folder.is_dir() else ():
        m = _CHECKPOINT_NAME.fullmatch(path.name)
        if m:
            found.append((int(m[1]), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    """The newest training checkpoint of a run folder (by iteration number)."""
    found = list_checkpoints(run_dir)
    if not found:
        raise InputError(
            f"{run_dir}: run folder holds no training checkpoint "
            f"({CHECKPOINT_DIR}/checkpoint_NNNNNNN.pt)"
        )
    return found[-1][1]


def prune_checkpoints(run_dir: str | os.PathLike[str], keep: int) -> None:
    """Remove all but the newest ``keep`` training checkpoints of a run folder."""
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the format


@dataclass
class TrainingCheckpoint:
    """A read and checked training checkpoint. ``data`` is the whole saved dict."""

    path: Path
    model: ModelConfig
    structure: str
    iteration: int
    data: dict[str, Any]

    @property
    def extra(self) -> dict[str, Any]:
        """What a user-facing loader reports besides the weights."""
        return {k: self.data[k] for k in ("iteration", "stage", "config") if k in self.data}


def is_training_checkpoint(data: Any) -> bool:
    """Whether a loaded ``torch`` object claims to be this project's training checkpoint."""
    return isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT


def parse_training_checkpoint(path: Path, data: Any) -> TrainingCheckpoint:
    """Check a loaded training checkpoint; InputError naming ``path`` for anything missing."""
    if not is_training_checkpoint(data):
        raise InputError(
            f"{path}: not a ctsdg training checkpoint; resume needs one "
            "(use pretrained=PATH to start from other weights)"
        )
    version = data.get("version", CHECKPOINT_VERSION)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise InputError(
            f"{path}: training checkpoint version {version!r}; this ctsdg reads version "
            f"{CHECKPOINT_VERSION} and older"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise InputError(f"{path}: training checkpoint lacks {', '.join(missing)}")
    structure = data.get("structure", "correct")
    if structure not in STRUCTURES:
        raise InputError(f"{path}: unknown structure convention {structure!r}")
    model = ModelConfig.from_dict(data["model"], path)
    return TrainingCheckpoint(path, model, structure, int(data.get("iteration", 0)), data)


def read_training_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> TrainingCheckpoint:
    """Load (``weights_only=True``) and check a training checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint to resume from not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: unreadable training checkpoint ({reason})") from None
    return parse_training_checkpoint(path, data)


def write_training_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write a training checkpoint atomically; ``format`` and ``version`` are added."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}

    def write(tmp: Path) -> None:
        # Through a Python file object, so that a full disk is an OSError(ENOSPC): the C++ zip
        # writer turns a failed write into RuntimeError("[enforce fail at inline_container.cc
        # ...]") with the OSError as its context, which is what is raised here.
        with open(tmp, "wb") as f:
            try:
                torch.save(payload, f)
            except RuntimeError as err:
                cause = unwrap_os_error(err)
                if cause is None:
                    raise
                raise cause from None

    return atomic_write(path, write)


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
    for i, (_, path) in enumerate(reversed(found)):
        try:
            checkpoint = read_training_checkpoint(path)
        except InputError as err:
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
            f"{len(found)} are unreadable); move them away to start fresh"
        )
    return None


def resume_path(config: Config) -> Path | None:
    """The file `resume_source` would resume from (for ``--dry-run``), or None."""
    checkpoint = resume_source(config)
    return checkpoint.path if checkpoint is not None else None


def restore(state: TrainState, checkpoint: TrainingCheckpoint) -> int:
    """Load a training checkpoint into ``state``; returns the iteration it was saved at."""
    config, path, data = state.config, checkpoint.path, checkpoint.data
    if checkpoint.model != ModelConfig(config.width, config.align_corners):
        raise InputError(f"{path}: checkpoint model {checkpoint.model} differs from the config's")
    missing = [k for k in _RESTORED if k not in data]
    if missing:
        raise InputError(f"{path}: cannot resume exactly, checkpoint lacks {', '.join(missing)}")
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
    check_tensors(data["generator"], path, "generator")
    check_tensors(data["discriminator"], path, "discriminator")
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
