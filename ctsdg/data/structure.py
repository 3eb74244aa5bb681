"""Structure inputs of the structure stream: gray image and Canny edges.

Two conventions (docs/evaluation.md and the README say which checkpoints use which):

- ``"correct"``: computed from the true uint8 image. The default for new training.
- ``"authors"``: bit-exact reproduction of what the authors' code and the MindSpore port feed
  their networks. They normalise the image to [-1, 1] in float32, multiply it by 255 and cast it
  to uint8, so values below mid-gray wrap modulo 256 (0 -> 1, 127 -> 0, 120 -> 242). Models
  trained by those codes must be run with this input.

Both are computed from the full, unmasked image; the model multiplies them by the mask later.
"""

from __future__ import annotations

import numpy as np
from skimage import color, feature

from ctsdg.choices import STRUCTURES, Structure


def _authors_lut() -> np.ndarray:
    """(256,) uint8: the value each uint8 level becomes after the authors' round trip.

    The arithmetic is done exactly as torchvision does it (float32 ``ToTensor``, then
    ``Normalize(0.5, 0.5)``, then ``* 255``), because the float32 rounding decides the result:
    level 127 gives -0.99999994, which truncates to 0, not to -1 (255).
    """
    x = np.arange(256, dtype=np.float32) / np.float32(255)
    x = (x - np.float32(0.5)) / np.float32(0.5)
    scaled = x * np.float32(255)
    # The uint8 cast truncates toward zero and wraps modulo 256 (torch ``.byte()``); numpy's
    # float -> uint8 cast of a negative value is undefined behaviour in C, so do it explicitly.
    return (np.trunc(scaled).astype(np.int64) % 256).astype(np.uint8)


AUTHORS_LUT = _authors_lut()


def authors_corruption(image: np.ndarray) -> np.ndarray:
    """The authors' corrupted copy of ``image`` (uint8 (H,W,3)), as uint8 (H,W,3)."""
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    return AUTHORS_LUT[image]


def structure_inputs(
    image: np.ndarray, sigma: float = 2.0, structure: Structure = "correct"
) -> tuple[np.ndarray, np.ndarray]:
    """Gray image and Canny edges of an RGB image.

    Args:
        image: uint8 (H, W, 3) RGB image, the full (unmasked) training or evaluation image.
        sigma: standard deviation of the Canny Gaussian (``skimage.feature.canny``, default
            thresholds).
        structure: ``"correct"`` or ``"authors"`` (see the module docstring).

    Returns:
        ``(gray, edge)``: float32 (H, W) arrays, gray in [0, 1], edge in {0, 1}.
    """
    if structure == "authors":
        image = authors_corruption(image)
    elif structure != "correct":
        raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    gray = color.rgb2gray(image)  # float64 in [0, 1]; canny runs on it before the cast
    edge = feature.canny(gray, sigma=sigma)
    return gray.astype(np.float32), edge.astype(np.float32)
