"""Image grids for people: training samples, the demo's comparison figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] (C = 1 or 3) -> (B, H, W, 3) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).numpy()


def masked_for_display(image: Tensor, mask: Tensor) -> Tensor:
    """The image with its holes painted white, as inpainting papers show inputs."""
    return image * mask + (1 - mask)


def grid(columns: Sequence[Tensor], titles: Sequence[str] = (), pad: int = 2) -> Image.Image:
    """Tile ``columns`` (each (B, C, H, W) in [-1, 1]) into B rows, with optional titles."""
    tiles = [to_uint8(c) for c in columns]
    rows, height, width = tiles[0].shape[0], tiles[0].shape[1], tiles[0].shape[2]
    header = 14 if titles else 0
    canvas = np.full(
        (header + rows * (height + pad) + pad, len(tiles) * (width + pad) + pad, 3), 255, np.uint8
    )
    for j, column in enumerate(tiles):
        for i in range(rows):
            top, left = header + pad + i * (height + pad), pad + j * (width + pad)
            canvas[top : top + height, left : left + width] = column[i]
    picture = Image.fromarray(canvas)
    if titles:
        draw = ImageDraw.Draw(picture)
        for j, title in enumerate(titles):
            draw.text((pad + j * (width + pad) + 2, 1), title, fill=(0, 0, 0))
    return picture


def save_grid(path: str | Path, columns: Sequence[Tensor], titles: Sequence[str] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(columns, titles).save(path)
    return path
