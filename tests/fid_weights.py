"""Test stand-ins for the FID Inception file, and photographs to measure FID on.

The real ``pt_inception-2015-12-05-6726825d.pth`` cannot be downloaded here. `calibrated_weights`
writes a file in its layout (torchvision Inception3 key names, ``num_batches_tracked``
included, ``fc``) with random convolutions whose BatchNorm running statistics are calibrated on
photographs: every layer then sees inputs of about unit scale, as in the trained network, so the
features vary with the image instead of saturating or vanishing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ctsdg.fid import unit_input
from ctsdg.models.inception import FIDInception


def photographs() -> list[np.ndarray]:
    """scikit-image's colour photographs, uint8 (H, W, 3)."""
    from skimage import data

    names = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")
    out = []
    for name in names:
        array = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
        out.append(np.ascontiguousarray(array[..., :3]))
    return out


def crops(count: int, seed: int, size: tuple[int, int] = (96, 96)) -> list[np.ndarray]:
    """``count`` random crops of the photographs (random photo, scale, position, flip, and a
    brightness change), each resized to ``size`` (W, H)."""
    rng = np.random.default_rng(seed)
    photos = photographs()
    out = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 4, min(h, w)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize(size, Image.BILINEAR)
        array = np.asarray(crop).astype(np.float64) * rng.uniform(0.8, 1.2)
        if rng.random() < 0.5:
            array = array[:, ::-1]
        out.append(np.clip(array, 0, 255).round().astype(np.uint8))
    return out


def write_folder(folder: Path, images: list[np.ndarray], prefix: str = "img") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{prefix}{i:03d}.png")
    return folder


def calibrated_weights(path: Path, seed: int = 0, *, calibrate: bool = True) -> Path:
    """Random FID Inception weights, BatchNorm calibrated on photo crops (unless not
    ``calibrate``: for tests that only load the file), saved as a .pth."""
    torch.manual_seed(seed)
    model = FIDInception()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.2, 0.2)
            module.training = True  # one pass on batch statistics ...
            module.momentum = 1.0  # ... which become the running statistics
    nn.init.normal_(model.fc.weight, std=0.01)
    if calibrate:
        images = torch.from_numpy(np.stack(crops(12, seed=seed + 1000))).permute(0, 3, 1, 2)
        with torch.no_grad():
            model(unit_input(images) * 2 - 1)
    torch.save(model.state_dict(), path)
    return path
