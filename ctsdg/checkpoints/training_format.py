"""The training-checkpoint format: its run-folder layout, reading, checking and writing.

A training checkpoint (``RUN/checkpoints/checkpoint_NNNNNNN.pt``) is a ``torch.save`` of plain
containers and tensors, so it loads with ``weights_only=True``: ``format``, ``version``,
``model`` (`ModelConfig` as a dict), ``structure``, ``config`` (the resolved training config),
``iteration``, ``stage``, ``world_size``, both networks, both optimizers, the gradient scaler and
the RNG states. Together with the data stream (a pure function of the seed and the iteration)
that is everything an exact resume needs.

This module is the one reader of the format: `checkpoints.loading` calls
`parse_training_checkpoint` for a user's ``--checkpoint``, and resuming
(`ctsdg.training.checkpoint`, which writes the file's content) calls `read_training_checkpoint`.
It imports nothing from `ctsdg.training`, so training can depend on `ctsdg.checkpoints` and not
the other way round.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctsdg.data.structure import STRUCTURES
from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write, check_tensors, unwrap_os_error
from ctsdg.models.generator import ModelConfig

CHECKPOINT_FORMAT = "ctsdg-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"checkpoint_(\d+)\.pt")
_REQUIRED = ("model",)  # enough to build a generator from (weights-only users)
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
    """Load (``weights_only=True``) and check a training checkpoint file, its weights' tensors
    included (`check_tensors`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint to resume from not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: unreadable training checkpoint ({reason})") from None
    checkpoint = parse_training_checkpoint(path, data)
    # Here, not when the weights are restored: resume=auto passes over a checkpoint with NaN
    # weights as over an unreadable one, and --dry-run refuses it as the run would.
    for what in ("generator", "discriminator"):
        if data.get(what) is not None:
            check_tensors(data[what], path, what)
    return checkpoint


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
