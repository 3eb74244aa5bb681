"""This project's weights files (``.safetensors``), for sharing trained models.

A weights file holds ``generator.*`` and, optionally, ``discriminator.*`` tensors; its metadata
carries the format, the `ModelConfig` and the structure-input convention the weights were
trained with. Training checkpoints (``.pt``, for resuming) are `training_format`'s.

Every file is written to a temporary name in the destination folder and swapped in with
``os.replace``, so an interrupted save never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ctsdg.checkpoints.training_format import (
    CHECKPOINT_DIR,
    CHECKPOINT_FORMAT,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
)
from ctsdg.checkpoints.training_format import (
    write_training_checkpoint as save_training_checkpoint,
)
from ctsdg.data.structure import STRUCTURES as STRUCTURE_CONVENTIONS
from ctsdg.fileio import atomic_write
from ctsdg.models.generator import ModelConfig

WEIGHTS_FORMAT = "ctsdg-weights"
FORMAT_VERSION = 1


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


__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "STRUCTURE_CONVENTIONS",
    "WEIGHTS_FORMAT",
    "ModelConfig",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "save_training_checkpoint",
    "save_weights",
]
