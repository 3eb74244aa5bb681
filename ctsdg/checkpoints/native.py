"""This project's own files: training checkpoints (resume) and weights files (sharing).

- A **training checkpoint** (``.pt``) is a ``torch.save`` of plain containers and tensors, so it
  loads with ``weights_only=True``: ``format``, ``version``, ``model`` (`ModelConfig` as a dict),
  ``structure``, ``config`` (the resolved training config), ``iteration``, ``stage``, both
  networks, both optimizers, the gradient scaler, RNG and sampler state.
- A **weights file** (``.safetensors``) holds ``generator.*`` and, optionally,
  ``discriminator.*`` tensors; its metadata carries the format, the `ModelConfig` and the
  structure-input convention the weights were trained with.

Every file is written to a temporary name in the destination folder and swapped in with
``os.replace``, so an interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ctsdg.errors import InputError
from ctsdg.fileio import atomic_write

CHECKPOINT_FORMAT = "ctsdg-checkpoint"
WEIGHTS_FORMAT = "ctsdg-weights"
FORMAT_VERSION = 1
STRUCTURE_CONVENTIONS = ("correct", "authors")
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"checkpoint_(\d+)\.pt")


@dataclass(frozen=True)
class ModelConfig:
    """What it takes to rebuild the networks from a file.

    Attributes:
        width: base channel count (64 for the published model).
        align_corners: the generator's upsampling variant (True for MindSpore-trained weights).
    """

    width: int = 64
    align_corners: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: Path | str) -> ModelConfig:
        try:
            return cls(width=int(data["width"]), align_corners=bool(data["align_corners"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{source}: model config {dict(data)!r} is incomplete") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def save_training_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write a training checkpoint atomically; ``format`` and ``version`` are added."""
    payload = {"format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def save_weights(
    path: str | os.PathLike[str],
    *,
    model: ModelConfig,
    structure: str,
    generator: Mapping[str, torch.Tensor],
    discriminator: Mapping[str, torch.Tensor] | None = None,
    source: str = "",
    image_size: int | None = None,
) -> Path:
    """Write a safetensors weights file (this project's parameter names) atomically.

    ``image_size`` records the square side the weights were trained at (read back as
    ``LoadedWeights.trained_size``).
    """
    from safetensors.torch import save

    if structure not in STRUCTURE_CONVENTIONS:
        raise ValueError(f"structure must be one of {STRUCTURE_CONVENTIONS}, got {structure!r}")
    tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in generator.items()}
    for k, v in (discriminator or {}).items():
        tensors[f"discriminator.{k}"] = v.detach().cpu().contiguous()
    metadata = {
        "format": WEIGHTS_FORMAT,
        "version": str(FORMAT_VERSION),
        "model": json.dumps(model.to_dict()),
        "structure": structure,
        "source": source,
    }
    if image_size is not None:
        metadata["image_size"] = json.dumps([image_size, image_size])
    # Serialised in memory, written by Python: a full disk is an OSError, not a Rust panic
    data = save(tensors, metadata=metadata)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
