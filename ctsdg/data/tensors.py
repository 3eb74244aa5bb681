"""uint8 RGB images <-> the float tensors the networks see: the one normalisation of the project.

Images enter the networks as float32 in [-1, 1] (``x / 255 * 2 - 1``, the authors' ``ToTensor``
then ``Normalize(0.5, 0.5)``) and leave through the inverse, rounded to uint8.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def image_to_tensor(image: np.ndarray) -> Tensor:
    """uint8 RGB (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1], contiguous."""
    # numpy, not torch: torch's intra-op thread pool costs milliseconds per call on a busy
    # machine when samples are loaded in the main process (num_workers=0)
    chw = np.ascontiguousarray(np.moveaxis(image, -1, -3)).astype(np.float32)
    return torch.from_numpy(chw / np.float32(255) * np.float32(2) - np.float32(1))


def tensor_to_image(images: Tensor) -> np.ndarray:
    """float (..., C, H, W) in [-1, 1], C = 1 or 3 -> uint8 RGB (..., H, W, 3), rounded.

    Exact for tensors made by `image_to_tensor`; values outside [-1, 1] are clipped.
    """
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return x.movedim(-3, -1).numpy()
