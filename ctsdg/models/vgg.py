"""Frozen VGG16 feature extractor for the perceptual and style losses (pool1, pool2, pool3)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from ctsdg.errors import InputError
from ctsdg.fileio import read_state_dict
from ctsdg.weights import AUTO, check_published_hash, resolve

log = logging.getLogger(__name__)

# torchvision's VGG16 (configuration "D") `features`: conv widths, "M" = max-pool. Building the
# layers with torchvision's indices lets vgg16-397923af.pth load under its own keys.
VGG16_CONFIG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)
_SLICES = ((0, 5), (5, 10), (10, 17))  # features[:5] -> pool1, [5:10] -> pool2, [10:17] -> pool3


def vgg16_features(stop: int) -> nn.Sequential:
    """torchvision's ``vgg16().features[:stop]``, same layers and indices (ReLUs in place)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers[:stop])


def load_vgg16_features(features: nn.Sequential, path: str | Path) -> None:
    """Fill ``features`` (from `vgg16_features`) with torchvision's ``vgg16-397923af.pth``.

    ``path`` may be ``auto``: the standard file in torch.hub's cache, fetched and verified on
    first use (`ctsdg.weights`). The file is read with ``weights_only=True``; keys past
    ``features`` (``classifier.*``) and layers beyond ``len(features)`` are ignored. Raises
    InputError for a missing file or a file without the wanted VGG16 convolution weights, or
    one whose SHA-256 does not match the checksum prefix in its name (`check_published_hash`).
    """
    if str(path) != AUTO:  # auto: resolve verifies it
        check_published_hash(path)
    path = resolve("vgg16", str(path))
    state = read_state_dict(
        path,
        "VGG16 weights (torchvision's vgg16-397923af.pth: pretrained_vgg=PATH or auto, or "
        "pretrained_vgg=random for tests and the demo)",
    )
    wanted = {f"features.{k}": v for k, v in features.state_dict().items()}
    missing = [k for k in wanted if k not in state]
    if missing:
        raise InputError(
            f"{path}: not a VGG16 state dict; missing {', '.join(missing[:4])}"
            + (" ..." if len(missing) > 4 else "")
        )
    for key, tensor in wanted.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise InputError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(tensor.shape)} (VGG16)"
            )
    features.load_state_dict({k.removeprefix("features."): state[k] for k in wanted})


class VGG16Features(nn.Module):
    """VGG16 layers up to pool3, returning the three pooled feature maps. Frozen, eval mode.

    Both reference codes feed [-1, 1] images without ImageNet normalisation; so does this.

    Forward: (B, 3, H, W) -> [(B, 64, H/2, W/2), (B, 128, H/4, W/4), (B, 256, H/8, W/8)].
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features(_SLICES[-1][1])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        # Always frozen: the loss network never uses training behaviour.
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for start, stop in _SLICES:
            for layer in self.features[start:stop]:
                x = layer(x)
            out.append(x)
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> VGG16Features:
        """Load torchvision's ``vgg16-397923af.pth`` as it is, or ``auto`` (see
        `load_vgg16_features`)."""
        model = cls()
        load_vgg16_features(model.features, path)
        return model

    @classmethod
    def random(cls, seed: int = 0) -> VGG16Features:
        """Randomly initialised extractor, for tests and the demo only (logged as such)."""
        log.warning(
            "VGG16 loss network has RANDOM weights (pretrained_vgg=random): "
            "perceptual and style losses are not the paper's"
        )
        model = cls()
        generator = torch.Generator().manual_seed(seed)
        for m in model.features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                with torch.no_grad():
                    m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
                    m.bias.zero_()
        return model
