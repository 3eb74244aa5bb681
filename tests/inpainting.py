"""Helpers shared by the inference, jobs, evaluation and output tests (not a test module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from ctsdg.checkpoints import ModelConfig, save_weights
from ctsdg.models import Generator


def tiny_weights(path: Path, image_size: int | None = None, structure: str = "authors") -> Path:
    """A width-8 generator's weights file (seed 0), ``structure`` inputs (default ``authors``)."""
    torch.manual_seed(0)
    state = Generator(width=8).state_dict()
    return save_weights(
        path, model=ModelConfig(8), structure=structure, generator=state, image_size=image_size
    )


def photo(width: int = 300, height: int = 200) -> Image.Image:
    """scikit-image's astronaut, resized (bilinear) to ``width`` x ``height``."""
    return Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BILINEAR)


def box_mask(width: int, height: int, *boxes: tuple[int, int, int, int]) -> Image.Image:
    """White (hole) rectangles (left, top, right, bottom) on black."""
    m = np.zeros((height, width), np.uint8)
    for left, top, right, bottom in boxes:
        m[top:bottom, left:right] = 255
    return Image.fromarray(m)


def run_ctsdg(*args: str | Path, processes: int = 1, port: int = 29731):
    """``python -m ctsdg ARGS``, or under ``torchrun --nproc_per_node processes`` (gloo, CPU)."""
    launch = [sys.executable, "-m", "ctsdg"]
    if processes > 1:
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_port",
            str(port),
            "-m",
            "ctsdg",
        ]
    return subprocess.run(
        [*launch, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
