"""Image grids for people: training samples, the demo's comparison figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor

from ctsdg.data.tensors import tensor_to_image


def masked_for_display(image: Tensor, mask: Tensor) -> Tensor:
    """The image with its holes painted white, as inpainting papers show inputs."""
    return image * mask + (1 - mask)


def grid(columns: Sequence[Tensor], titles: Sequence[str] = (), pad: int = 2) -> Image.Image:
    """Tile ``columns`` (each (B, C, H, W) in [-1, 1]) into B rows, with optional titles."""
    tiles = [tensor_to_image(c) for c in columns]
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
